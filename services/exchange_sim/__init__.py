"""exchange-sim: a local venue that speaks Coinbase Advanced Trade, for tests and offline runs."""
