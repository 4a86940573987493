"""Routes closed candles to the strategies that trade them; pure, no I/O.

Candles of one product and granularity must arrive in order. The engine makes a stream
consumer's redelivery harmless: the newest candle seen again returns the same signals
again (so a publish that failed can be redone with the same ids), and an older candle
is ignored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from services.signal.strategies.base import Signal, Strategy
from shared.candle_files import Candle

__all__ = ["SignalEngine"]

Route = tuple[str, int]  # product_id, granularity_s


class SignalEngine:
    def __init__(self, strategies: Sequence[Strategy]) -> None:
        names = [strategy.name for strategy in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must be unique, got {names}")
        self.strategies = tuple(strategies)
        self._routes: dict[Route, list[Strategy]] = defaultdict(list)
        for strategy in strategies:
            for product_id in strategy.products:
                self._routes[(product_id, strategy.granularity_s)].append(strategy)
        self._latest: dict[Route, tuple[int, list[Signal]]] = {}
        self.stale_candles = 0

    def routes(self) -> list[Route]:
        """Every (product, granularity) some strategy needs candles of."""
        return sorted(self._routes)

    def on_candle(self, product_id: str, granularity_s: int, candle: Candle) -> list[Signal]:
        """The signals ``candle`` causes, in strategy order; [] when no strategy wants it."""
        route = (product_id, granularity_s)
        strategies = self._routes.get(route)
        if not strategies:
            return []
        latest = self._latest.get(route)
        if latest is not None and candle.start <= latest[0]:
            if candle.start == latest[0]:
                return list(latest[1])
            self.stale_candles += 1
            return []
        signals = [
            signal
            for strategy in strategies
            if (signal := strategy.on_candle(product_id, candle)) is not None
        ]
        self._latest[route] = (candle.start, signals)
        return signals
