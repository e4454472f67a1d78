"""The local console: a terminal chat with the bot, one line a message."""
