"""Closed candles from the trade feed, and when to trust them: market-data's pure core.

Every trade of ``market_trades`` is added to the open bucket of each granularity.

A bucket is *closed* (decided) once the feed's progress passes its end plus
``close_delay_s``. Progress is the venue's own clock as stamped on the last message
received while the feed is up, and the local clock while the feed is down. It says when
to stop waiting for a bucket, not that every print of it is in: a connection delivers a
product's trades in order, but nothing orders them against the other channels or the
other products' trades (a heartbeat, a book update or another product's trades may be
stamped past a print still on its way, and Coinbase sends trades in batches).

A closed bucket is *trusted* only if

* the trade feed was unbroken for the whole bucket: a disconnect, a sequence gap or a
  start-up makes a product's feed "clean" again only from the moment it resumed, and a
  bucket that started before that moment is not trusted; and
* a trade of the same product at or after the bucket's end has been received: its
  prints come in order, so every print of the bucket came before that one. (With
  sequence numbers counted per product, this is also what shows that no message of the
  product was lost up to there: a gap shows only when the product's next one arrives.)

The shell publishes a trusted bucket as built and fetches an untrusted one from REST,
the venue's own candle: a lost or late trade never makes a wrong candle. A quiet
product, with no trade after a bucket by the time it closes, gets that bucket from REST.
A trade of a bucket already decided is counted in ``late_trades`` and dropped.

Buckets are decided in order per (product, granularity) from a cursor, so each is
published at most once and never out of order, however the feed misbehaves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.candle_files import Candle
from shared.clock import ensure_utc
from shared.coinbase.ws_messages import Trade

__all__ = ["CandleBuilder", "ClosedBucket", "Route", "bucket_start", "unix_seconds"]

Route = tuple[str, int]  # product_id, granularity_s
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RECENT_TRADE_IDS = 20_000


def unix_seconds(moment: datetime) -> float:
    return (ensure_utc(moment) - _EPOCH) / timedelta(seconds=1)


def bucket_start(moment: datetime, granularity_s: int) -> int:
    seconds = int(unix_seconds(moment) // 1)
    return seconds - seconds % granularity_s


@dataclass(frozen=True)
class ClosedBucket:
    """A bucket whose time is over: its candle as built (None: no trade) and whether to trust it."""

    start: int
    candle: Candle | None
    trusted: bool


def _order_key(trade: Trade) -> tuple[datetime, int, str]:
    # Trade ids are increasing integers on Coinbase; they order prints of the same instant.
    number = int(trade.trade_id) if trade.trade_id.isdigit() else 0
    return trade.time, number, trade.trade_id


class _Bucket:
    __slots__ = ("close", "close_key", "high", "low", "open", "open_key", "start", "volume")

    def __init__(self, start: int, trade: Trade) -> None:
        key = _order_key(trade)
        self.start = start
        self.open_key = self.close_key = key
        self.open = self.close = self.high = self.low = trade.price
        self.volume = trade.size

    def add(self, trade: Trade) -> None:
        key = _order_key(trade)
        if key < self.open_key:
            self.open_key, self.open = key, trade.price
        if key >= self.close_key:
            self.close_key, self.close = key, trade.price
        self.high = max(self.high, trade.price)
        self.low = min(self.low, trade.price)
        self.volume += trade.size

    def candle(self) -> Candle:
        return Candle(self.start, self.low, self.high, self.open, self.close, self.volume)


class _RecentIds:
    """The last ``size`` trade ids of one product: a resubscribe's snapshot repeats trades."""

    def __init__(self, size: int) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._size = size

    def add(self, trade_id: str) -> bool:
        if trade_id in self._ids:
            return False
        self._ids.add(trade_id)
        self._order.append(trade_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


class CandleBuilder:
    """Candles of ``granularities`` for ``products``; see the module docstring."""

    def __init__(
        self,
        products: Sequence[str],
        granularities: Sequence[int],
        close_delay_s: float,
    ) -> None:
        if not products or not granularities:
            raise ValueError("a candle builder needs products and granularities")
        if close_delay_s < 0:
            raise ValueError("close_delay_s must not be negative")
        self.granularities = tuple(sorted(set(granularities)))
        self.close_delay_s = close_delay_s
        self._open: dict[Route, dict[int, _Bucket]] = {
            (p, g): {} for p in products for g in self.granularities
        }
        self._cursor: dict[Route, int] = {}
        self._clean_from: dict[str, float | None] = dict.fromkeys(products)
        self._recent = {p: _RecentIds(_RECENT_TRADE_IDS) for p in products}
        self._latest_trade: dict[str, float] = {}  # product -> newest trade time received
        self.late_trades = 0

    def routes(self) -> list[Route]:
        return sorted(self._open)

    # -- the feed ----------------------------------------------------------------------

    def on_trades(self, trades: Iterable[Trade]) -> None:
        """Add trades (snapshot or update; repeats are ignored by trade id)."""
        for trade in trades:
            recent = self._recent.get(trade.product_id)
            if recent is None or not recent.add(trade.trade_id):
                continue
            moment = unix_seconds(trade.time)
            if moment > self._latest_trade.get(trade.product_id, moment - 1):
                self._latest_trade[trade.product_id] = moment
            for granularity in self.granularities:
                self._add(trade, (trade.product_id, granularity))

    def _add(self, trade: Trade, route: Route) -> None:
        start = bucket_start(trade.time, route[1])
        cursor = self._cursor.get(route)
        if cursor is not None and start < cursor:
            self.late_trades += 1  # its bucket is decided already
            return
        buckets = self._open[route]
        bucket = buckets.get(start)
        if bucket is None:
            buckets[start] = _Bucket(start, trade)
        else:
            bucket.add(trade)

    def disrupted(self, product_ids: Iterable[str]) -> None:
        """Trades of these products may have been lost from now on (disconnect, gap)."""
        for product_id in product_ids:
            if product_id in self._clean_from:
                self._clean_from[product_id] = None

    def resumed(self, product_ids: Iterable[str], now: datetime) -> None:
        """Every trade of these products from ``now`` on will arrive."""
        moment = unix_seconds(now)
        for product_id in product_ids:
            if product_id in self._clean_from:
                self._clean_from[product_id] = moment

    # -- deciding ----------------------------------------------------------------------

    def start_at(self, route: Route, start: int) -> None:
        """The first bucket of ``route`` still to decide (after a restart: last published + g)."""
        granularity = route[1]
        if start % granularity:
            raise ValueError(f"{start} is not a {granularity}s bucket start")
        self._cursor[route] = start
        buckets = self._open[route]
        for old in [s for s in buckets if s < start]:
            del buckets[old]

    def cursor(self, route: Route) -> int | None:
        return self._cursor.get(route)

    def closed(self, route: Route, progress: datetime) -> list[ClosedBucket]:
        """Buckets from the cursor whose end plus the close delay is before ``progress``,
        each trusted or not as the module docstring says."""
        cursor = self._cursor.get(route)
        if cursor is None:
            raise RuntimeError(f"no start set for {route}; call start_at first")
        granularity = route[1]
        horizon = unix_seconds(progress) - self.close_delay_s
        clean_from = self._clean_from[route[0]]
        latest_trade = self._latest_trade.get(route[0])
        buckets = self._open[route]
        closed = []
        start = cursor
        while start + granularity <= horizon:
            bucket = buckets.get(start)
            trusted = (
                clean_from is not None
                and clean_from <= start
                and latest_trade is not None
                and latest_trade >= start + granularity
            )
            closed.append(ClosedBucket(start, bucket.candle() if bucket else None, trusted))
            start += granularity
        return closed

    def advance(self, route: Route, through: int) -> None:
        """Buckets up to ``through`` are published (or empty): move the cursor past them."""
        granularity = route[1]
        next_start = through + granularity
        cursor = self._cursor.get(route)
        if cursor is not None and next_start <= cursor:
            return
        self.start_at(route, next_start)
