"""The version tree of a thread, its contact sheet and its export."""
