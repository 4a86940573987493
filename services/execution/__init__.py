"""execution: turns approved order intents into venue orders and fills."""
