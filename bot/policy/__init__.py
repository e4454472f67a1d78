"""Rules applied to events and turns: access, limits, moderation, budgets."""
