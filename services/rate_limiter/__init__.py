"""The rate-limiter service: one shared token budget for every caller of the exchange."""
