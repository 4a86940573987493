"""The market the backtest's venue and risk see, made from candles or prints and the cost
model.

Within each candle the mid runs open -> low -> high -> close (open -> high -> low ->
close when it closes down), the extremes at one and two thirds of its span, linear in
between: the path exchange-sim replays history on (``shared.candle_files.candle_path``).
A product given by its trade prints has the last print's price as its mid.
Around the mid sits the book the cost model shapes (``CostModel.book``), so a taker fill
pays what the model says; without slippage the book is locked at the mid.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from shared.candle_files import Candle, candle_path
from shared.coinbase.book import BookSide
from shared.matching.types import ProductRules
from shared.money import Rounding, quantize
from shared.slippage import BPS, CostModel

__all__ = ["ModelMarket", "Waypoint", "candle_time", "waypoints"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Levels = list[tuple[BookSide, Decimal, Decimal]]


def candle_time(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Waypoint:
    time: datetime
    mid: Decimal


def waypoints(candle: Candle, granularity_s: int) -> Iterator[Waypoint]:
    """The candle's path points: open at its start, the extremes, the close at its end."""
    start = candle_time(candle.start)
    third = timedelta(seconds=granularity_s) / 3
    for index, price in enumerate(candle_path(candle)):
        yield Waypoint(start + third * index, price)


class ModelMarket:
    """Each product's current candle or last print, its mid at any moment, and the model's
    book there."""

    def __init__(
        self,
        cost: CostModel,
        rules: Mapping[str, ProductRules],
        tiers: Mapping[str, int],
    ) -> None:
        self.cost = cost
        self.rules = dict(rules)
        self._shapes = {
            product_id: cost.book_shape(tiers[product_id]) if cost.slippage else []
            for product_id in self.rules
        }
        self._tiers = dict(tiers)
        self._candles: dict[str, tuple[Candle, int]] = {}
        self._prints: dict[str, Decimal] = {}  # product given by prints -> the last one's price
        self._books: dict[str, tuple[Decimal, Levels, Decimal, Decimal]] = {}  # mid, book, bid, ask

    def set_candle(self, product_id: str, candle: Candle, granularity_s: int) -> None:
        self._candles[product_id] = (candle, granularity_s)

    def set_print(self, product_id: str, price: Decimal) -> None:
        self._prints[product_id] = price

    def mid_at(self, product_id: str, moment: datetime) -> Decimal | None:
        """The mid on the current candle's path, on the tick grid; its close after its end.
        For a product given by prints, the last print's price (the engine asks no earlier)."""
        last = self._prints.get(product_id)
        if last is not None:
            return last
        current = self._candles.get(product_id)
        if current is None:
            return None
        candle, span = current
        offset = (moment - candle_time(candle.start)).total_seconds() * 3 / span
        if offset >= 3:
            return candle.close
        points = candle_path(candle)
        leg = max(0, min(int(offset), 2))
        within = Decimal(repr(max(0.0, offset - leg)))
        mid = points[leg] + (points[leg + 1] - points[leg]) * within
        return self._on_grid(product_id, mid)

    def levels(self, product_id: str, mid: Decimal) -> Levels:
        """The model's book at ``mid``, as the venue takes a snapshot."""
        return self._book(product_id, mid)[1]

    def quote(self, product_id: str, mid: Decimal) -> tuple[Decimal, Decimal]:
        """Best bid and ask of the model's book at ``mid``."""
        _, _, bid, ask = self._book(product_id, mid)
        return bid, ask

    def _book(self, product_id: str, mid: Decimal) -> tuple[Decimal, Levels, Decimal, Decimal]:
        cached = self._books.get(product_id)
        if cached is not None and cached[0] == mid:
            return cached
        rules = self.rules[product_id]
        bids, asks = self.cost.book(
            mid, self._tiers[product_id], rules.price_increment, rules.base_increment
        )
        levels = [(BookSide.BID, level.price, level.size) for level in bids] + [
            (BookSide.OFFER, level.price, level.size) for level in asks
        ]
        bid = max((level.price for level in bids), default=mid)
        book = (mid, levels, bid, min(level.price for level in asks))
        self._books[product_id] = book
        return book

    def crossing(
        self, product_id: str, level: Decimal, start: Waypoint, end: Waypoint
    ) -> Waypoint | None:
        """Where on the leg ``start`` -> ``end`` the best bid reaches ``level``, if it does.

        The bid sits a fixed fraction below the mid (the book's first level), so the mid
        that puts the bid on ``level`` is found by scaling, then placed on the leg.
        """
        first_bps = self._shapes[product_id][0][0] if self._shapes[product_id] else Decimal(0)
        target = level / (1 - first_bps / BPS)
        low, high = sorted((start.mid, end.mid))
        if start.mid == end.mid or not low < target < high:
            return None
        share = (target - start.mid) / (end.mid - start.mid)
        moment = start.time + (end.time - start.time) * float(share)
        rounding = Rounding.FLOOR if end.mid < start.mid else Rounding.CEILING
        mid = quantize(target, self.rules[product_id].price_increment, rounding)
        return Waypoint(moment, mid)

    def _on_grid(self, product_id: str, price: Decimal) -> Decimal:
        increment = self.rules[product_id].price_increment
        if increment.as_tuple().digits == (1,):  # a power of ten: the fast path
            return price.quantize(increment, rounding=ROUND_HALF_EVEN)
        return quantize(price, increment, Rounding.HALF_EVEN)
