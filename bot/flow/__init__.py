"""An event's way through the bot: intake (store, order, lease) → router (what it is) →
middleware (limits, blocked terms, budgets) → turn service or a command → delivery."""
