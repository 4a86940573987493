"""market-data: Coinbase market data in, clean ordered events out."""
