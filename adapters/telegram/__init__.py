"""Telegram: long polling or a webhook, translated to core events (python-telegram-bot)."""
