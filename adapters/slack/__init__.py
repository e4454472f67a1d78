"""Slack: Socket Mode or the Events API, translated to core events (slack-bolt)."""
