"""An event's way through the bot: intake, router, commands, turns, delivery."""
