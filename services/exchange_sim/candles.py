"""Coinbase-style candles: one-minute buckets built from prints, served at any granularity.

The store keeps one-minute candles only; coarser granularities are aggregated on demand,
so a print is recorded once and every granularity agrees with it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.candle_files import Candle
from shared.clock import ensure_utc
from shared.coinbase.granularity import Granularity

__all__ = [
    "MINUTE",
    "SECONDS_PER_YEAR",
    "Candle",
    "CandleStore",
    "Granularity",
    "minute_start",
]

MINUTE = 60
SECONDS_PER_YEAR = 365 * 24 * 3600  # crypto trades every day of the year
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_start(moment: datetime) -> int:
    """UNIX seconds of the start of the UTC minute holding ``moment``."""
    seconds = (ensure_utc(moment) - _EPOCH) // timedelta(seconds=1)
    return seconds - seconds % MINUTE


def _merge(candles: list[Candle], start: int) -> Candle:
    """One candle from consecutive candles in ascending order."""
    return Candle(
        start=start,
        low=min(c.low for c in candles),
        high=max(c.high for c in candles),
        open=candles[0].open,
        close=candles[-1].close,
        volume=sum((c.volume for c in candles), Decimal(0)),
    )


class CandleStore:
    """One product's one-minute candles, bounded to the newest ``max_minutes`` minutes.

    Prints arrive in time order. A late print, one whose minute is older than the newest
    minute held, is applied to its minute's high, low and volume if that minute is still
    held; its open and close stay, since they belong to the first and last prints that
    arrived. A late print whose minute is not held (dropped, or never traded) is ignored.
    Late prints inside the newest minute are ordinary: they become its close.
    """

    def __init__(self, max_minutes: int = 60 * 24 * 30) -> None:
        if max_minutes < 1:
            raise ValueError(f"max_minutes must be at least 1, got {max_minutes}")
        self._max_minutes = max_minutes
        self._starts: list[int] = []  # ascending
        self._minutes: dict[int, Candle] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def add_print(self, time: datetime, price: Decimal, size: Decimal) -> bool:
        """Record a trade; returns False when it is a late print whose minute is not held."""
        start = minute_start(time)
        held = self._minutes.get(start)
        newest = self._starts[-1] if self._starts else None
        if held is None:
            if newest is not None and start < newest:
                return False
            self._minutes[start] = Candle(start, price, price, price, price, size)
            self._starts.append(start)
            self._trim()
            return True
        late = start != newest
        self._minutes[start] = Candle(
            start=start,
            low=min(held.low, price),
            high=max(held.high, price),
            open=held.open,
            close=held.close if late else price,
            volume=held.volume + size,
        )
        return True

    def extend(self, candles: Iterable[Candle]) -> None:
        """Bulk-load one-minute candles (history); a candle replaces one with the same start."""
        for candle in candles:
            if candle.start % MINUTE:
                raise ValueError(f"candle start {candle.start} is not on a minute boundary")
            if candle.start not in self._minutes:
                bisect.insort(self._starts, candle.start)
            self._minutes[candle.start] = candle
        self._trim()

    def candles(
        self, start: int, end: int, granularity: Granularity, limit: int | None = None
    ) -> list[Candle]:
        """Buckets whose start is in [start, end), newest first; ``limit`` keeps the newest."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        step = granularity.seconds
        first_bucket = -(-start // step) * step  # the first aligned start >= start
        last_bucket = (end - 1) // step * step  # the last aligned start < end
        lo = bisect.bisect_left(self._starts, first_bucket)
        # A bucket starting before `end` runs to its own end, past `end` if need be.
        hi = bisect.bisect_left(self._starts, last_bucket + step)
        result: list[Candle] = []
        index = hi
        while index > lo and (limit is None or len(result) < limit):
            bucket = self._starts[index - 1] - self._starts[index - 1] % step
            begin = bisect.bisect_left(self._starts, bucket, lo, index)
            members = [self._minutes[s] for s in self._starts[begin:index]]
            result.append(_merge(members, bucket))
            index = begin
        return result

    def latest(self, granularity: Granularity) -> Candle | None:
        """The newest bucket of ``granularity``, possibly still open."""
        if not self._starts:
            return None
        step = granularity.seconds
        bucket = self._starts[-1] - self._starts[-1] % step
        found = self.candles(bucket, bucket + step, granularity, limit=1)
        return found[0] if found else None

    def span(self) -> tuple[int, int] | None:
        """Starts of the oldest and the newest minute held."""
        if not self._starts:
            return None
        return self._starts[0], self._starts[-1]

    def _trim(self) -> None:
        excess = len(self._starts) - self._max_minutes
        if excess > 0:
            for start in self._starts[:excess]:
                del self._minutes[start]
            del self._starts[:excess]
