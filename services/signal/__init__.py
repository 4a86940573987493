"""signal: strategies that turn market data into trade proposals."""
