"""backtest: the services' strategy, risk and execution code replayed over candle history."""
