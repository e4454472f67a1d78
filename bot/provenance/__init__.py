"""Content Credentials (C2PA) on what the bot sends."""
