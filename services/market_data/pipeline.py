"""market-data's worker: the WebSocket feed in, ``md.ticks``, ``md.books`` and ``md.candles`` out.

Start-up: read the product catalog from REST (retrying until the venue answers), keep
only the universe's products the venue lists, set each candle route's cursor from what
was already published (or ``backfill_candles`` buckets back), then run the feed and the
loops that close candles, flush throttled books, refresh products and export metrics.
The first closing pass is the backfill: every bucket from the cursor up to now is
fetched from REST, because no trade of it was seen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.market_data import metrics
from services.market_data.candles import CandleBuilder, ClosedBucket, Route, bucket_start
from services.market_data.publishing import CandleLedger
from services.market_data.quotes import QuoteTracker
from shared.aio import pause_unless_stopped
from shared.bus import BusKeys, Publisher
from shared.candle_files import Candle
from shared.clock import Clock
from shared.coinbase.errors import CoinbaseError
from shared.coinbase.granularity import Granularity
from shared.coinbase.rest import CoinbaseRest
from shared.coinbase.ws import MarketDataFeed
from shared.coinbase.ws_events import (
    BookChanged,
    BookReset,
    Connected,
    Disconnected,
    FeedEvent,
    FeedSettings,
    GapDetected,
    TradesReceived,
)
from shared.logging import get_logger
from shared.messages import BookLevel, BookUpdated, Payload, TickUpdated, new_envelope
from shared.products import LatestTicks, ProductCatalog, ProductInfo

__all__ = ["MarketData", "PipelineOptions"]

_log = get_logger("market_data")
REPAIR_ATTEMPTS = 5
"""How often a bucket we saw trades in is asked of the venue before it is given up."""
FeedFactory = Callable[[FeedSettings, Callable[[FeedEvent], Awaitable[None]]], MarketDataFeed]


@dataclass(frozen=True)
class PipelineOptions:
    products: tuple[str, ...]
    granularities: tuple[int, ...]
    feed: FeedSettings  # its product_ids are narrowed at start to those the venue lists
    close_delay_s: float = 3.0
    candle_poll_s: float = 0.1
    backfill_candles: int = 300
    book_depth: int = 10
    book_interval_s: float = 0.25
    products_refresh_s: float = 300.0
    rest_retry_s: float = 2.0
    stale_after_s: float = 30.0


class MarketData:
    """The service's one worker (see the module docstring)."""

    def __init__(
        self,
        options: PipelineOptions,
        *,
        redis: Redis,
        keys: BusKeys,
        rest: CoinbaseRest,
        clock: Clock,
        feed_factory: FeedFactory,
        stream_maxlen: int = 100_000,
    ) -> None:
        self.options = options
        self._rest = rest
        self._clock = clock
        self._feed_factory = feed_factory
        self._publisher = Publisher(redis, keys=keys, maxlen=stream_maxlen)
        self._ledger = CandleLedger(redis, keys, clock, maxlen=stream_maxlen)
        self._catalog = ProductCatalog(redis, keys.prefix)
        self._latest_ticks = LatestTicks(redis, keys.prefix)
        self._stop = asyncio.Event()
        self.feed: MarketDataFeed | None = None
        self.listed: tuple[str, ...] = ()
        self.builder: CandleBuilder | None = None
        self._quotes = QuoteTracker(options.products)
        self._dirty_books: dict[str, int] = {}  # product -> origin_ts of the newest change
        self._heard: dict[str, float] = {}  # product -> monotonic time of its last message
        self._retry_at: dict[Route, float] = {}
        self._repair_attempts: dict[Route, int] = {}
        self.backfilled = False
        self._exported: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        if not await self._start_up():
            return
        loops = [
            self._run_feed(), self._every(self.options.candle_poll_s, self._close_candles),
            self._every(self.options.book_interval_s, self._flush_books),
            self._every(self.options.products_refresh_s, self._refresh_products, now=False),
            self._every(1.0, self._export_metrics),
        ]  # fmt: skip
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await self._stop.wait()
        finally:
            if self.feed is not None:
                self.feed.stop()
            await asyncio.wait(tasks, timeout=5)
            for task in tasks:
                task.cancel()

    async def _start_up(self) -> bool:
        """Products, then the candle cursors; waits out an unreachable venue or Redis."""
        while not self._stop.is_set():
            try:
                if await self._load_products():
                    builder = CandleBuilder(
                        self.listed, self.options.granularities, self.options.close_delay_s
                    )
                    await self._set_cursors(builder)
                    self.builder = builder
                    return True
            except RedisError as exc:
                _log.warning("redis unavailable at start; retrying", error=str(exc))
                await pause_unless_stopped(self._stop, self.options.rest_retry_s)
        return False

    async def _run_feed(self) -> None:
        """The feed, made anew should it ever end by an error: the service never runs blind."""
        feed_settings = dataclasses.replace(self.options.feed, product_ids=self.listed)
        while not self._stop.is_set():
            self.feed = self._feed_factory(feed_settings, self._on_event)
            try:
                await self.feed.run()
            except Exception:
                _log.exception("market-data feed failed; starting a new one")
            await self._export_metrics()  # the next feed counts from zero
            self._exported = {"late": self._exported.get("late", 0)}
            if self.builder is not None:
                self.builder.disrupted(self.listed)
            for product_id in self.listed:
                self._quotes.reset(product_id)
            await pause_unless_stopped(self._stop, self.options.rest_retry_s)

    def stop(self) -> None:
        self._stop.set()
        if self.feed is not None:
            self.feed.stop()

    async def _every(
        self, interval_s: float, action: Callable[[], Awaitable[None]], *, now: bool = True
    ) -> None:
        if not now and await pause_unless_stopped(self._stop, interval_s):
            return
        while not self._stop.is_set():
            try:
                await action()
            except Exception:  # one failed pass must not end the loop; the next one retries
                _log.exception("market-data pass failed", action=action.__name__)
            if await pause_unless_stopped(self._stop, interval_s):
                return

    # -- products ------------------------------------------------------------------------

    async def _load_products(self) -> bool:
        """The venue's products; False (retry) when it cannot answer or lists none of ours."""
        try:
            await self._refresh_products()
        except CoinbaseError as exc:
            metrics.REST_ERRORS.labels("products").inc()
            _log.warning("products unavailable; retrying", error=str(exc))
        else:
            if self.listed:
                return True
            _log.error("the venue lists none of the universe's products; retrying")
        await pause_unless_stopped(self._stop, self.options.rest_retry_s)
        return False

    async def _refresh_products(self) -> None:
        venue = {product.product_id: product for product in await self._rest.products()}
        now = self._clock.now()
        known = await self._catalog.all()
        infos: list[ProductInfo] = []
        for product_id in self.options.products:
            if product_id in venue:
                infos.append(ProductInfo.from_venue(venue[product_id], now))
            elif product_id in known:
                infos.append(known[product_id].delisted(now))
            else:
                _log.error("product not listed by the venue; not subscribed", product=product_id)
        await self._catalog.save(infos)
        for info in infos:
            metrics.PRODUCT_ENTRIES_ALLOWED.labels(info.product_id).set(int(info.entries_allowed))
            if not info.entries_allowed:
                _log.warning("product closed to new orders", product=info.product_id,
                             status=info.status, cancel_only=info.cancel_only)  # fmt: skip
        if not self.listed:
            self.listed = tuple(p for p in self.options.products if p in venue)

    # -- candles -----------------------------------------------------------------------

    async def _set_cursors(self, builder: CandleBuilder) -> None:
        published = await self._ledger.last_published()
        now = self._clock.now()
        for route in builder.routes():
            granularity = route[1]
            if route in published:
                builder.start_at(route, published[route] + granularity)
            else:
                first = bucket_start(now, granularity) - self.options.backfill_candles * granularity
                builder.start_at(route, first)

    async def _close_candles(self) -> None:
        builder = self.builder
        assert builder is not None
        progress = self._progress()
        complete = True
        for route in builder.routes():
            if time.monotonic() < self._retry_at.get(route, 0.0):
                complete = False
                continue
            try:
                closed = builder.closed(route, progress)
                published = not closed or await self._publish_closed(builder, route, closed)
            except Exception:  # one product's trouble must not hold up the others
                _log.exception("closing candles failed", product=route[0], granularity_s=route[1])
                published = False
            if not published:
                complete = False
                self._retry_at[route] = time.monotonic() + self.options.rest_retry_s
        metrics.LATE_TRADES.inc(builder.late_trades - self._exported.get("late", 0))
        self._exported["late"] = builder.late_trades
        self.backfilled = self.backfilled or complete

    def _progress(self) -> datetime:
        """When buckets are over: the venue's newest stamp while the feed is up, else our clock.

        Whether a closed bucket's prints are all in is the builder's to say, from the trades
        themselves: a stamp of another channel or product may run ahead of a trade in flight.
        """
        feed = self.feed
        if feed is not None and feed.connected and feed.exchange_time is not None:
            return feed.exchange_time
        return self._clock.now()

    async def _publish_closed(
        self, builder: CandleBuilder, route: Route, closed: list[ClosedBucket]
    ) -> bool:
        """Publish ``closed`` in order; False when the venue could not fill a break."""
        index = 0
        while index < len(closed):
            bucket = closed[index]
            if bucket.trusted:
                if bucket.candle is not None:
                    await self._publish_candle(route, bucket.candle, "trades")
                builder.advance(route, bucket.start)
                index += 1
                continue
            run = [bucket]
            while index + len(run) < len(closed) and not closed[index + len(run)].trusted:
                run.append(closed[index + len(run)])
            if not await self._repair(builder, route, run):
                return False
            index += len(run)
        return True

    async def _repair(self, builder: CandleBuilder, route: Route, run: list[ClosedBucket]) -> bool:
        """Fetch the venue's candles for buckets whose trades may be incomplete."""
        product_id, granularity = route
        first, last = run[0].start, run[-1].start
        try:
            venue_candles = await self._rest.candles(
                product_id, _utc(first), _utc(last + granularity),
                Granularity.from_seconds(granularity),
            )  # fmt: skip
        except CoinbaseError as exc:
            metrics.REST_ERRORS.labels("candles").inc()
            _log.warning("candle repair failed; will retry", product=product_id,
                         granularity_s=granularity, error=str(exc))  # fmt: skip
            return False
        by_start = {c.start: c for c in venue_candles if first <= c.start <= last}
        # We saw trades there, so the venue has a candle: it is late, not absent. Ask again.
        missing = [b.start for b in run if b.candle is not None and b.start not in by_start]
        attempts = self._repair_attempts.get(route, 0)
        if missing and attempts < REPAIR_ATTEMPTS:
            self._repair_attempts[route] = attempts + 1
            _log.info("venue candle not there yet; retrying", product=product_id,
                      granularity_s=granularity, start=missing[0])  # fmt: skip
            return False
        if missing:
            metrics.CANDLES_REJECTED.labels(product_id).inc(len(missing))
            _log.error("venue never served these candles; skipped", product=product_id,
                       granularity_s=granularity, starts=missing)  # fmt: skip
        self._repair_attempts.pop(route, None)
        for bucket in run:
            found = by_start.get(bucket.start)
            if found is not None:
                candle = Candle(found.start, found.low, found.high, found.open, found.close,
                                found.volume)  # fmt: skip
                await self._publish_candle(route, candle, "rest")
            builder.advance(route, bucket.start)
        return True

    async def _publish_candle(self, route: Route, candle: Candle, source: str) -> None:
        try:
            await self._ledger.publish(route, candle)
        except ValueError as exc:  # the venue's candle breaks low <= open, close <= high
            metrics.CANDLES_REJECTED.labels(route[0]).inc()
            _log.error("inconsistent candle skipped", product=route[0], start=candle.start,
                       error=str(exc))  # fmt: skip
            return
        metrics.CANDLES.labels(str(route[1]), source).inc()

    # -- the feed ----------------------------------------------------------------------

    async def _on_event(self, event: FeedEvent) -> None:
        match event:
            case BookChanged():
                await self._on_book(event)
            case TradesReceived():
                await self._on_trades(event)
            case _:
                self._on_feed_state(event)

    def _on_feed_state(self, event: FeedEvent) -> None:
        builder = self.builder
        assert builder is not None
        match event:
            case Connected():
                builder.resumed(self.listed, self._clock.now())
            case Disconnected():
                builder.disrupted(self.listed)
            case GapDetected() if self.options.feed.sequence_scope == "connection":
                builder.disrupted(self.listed)  # the feed reconnects; Connected resumes
            case GapDetected(product_id=product_id, channel="market_trades"):
                # Numbered per product: one message was lost, the next ones arrive.
                lost = self.listed if product_id is None else (product_id,)
                builder.disrupted(lost)
                builder.resumed(lost, self._clock.now())
            case BookReset(product_id=product_id):
                self._quotes.reset(product_id)
                self._dirty_books.pop(product_id, None)

    async def _on_book(self, event: BookChanged) -> None:
        received_ns = self._clock.now_ns()
        self._heard[event.product_id] = time.monotonic()
        self._dirty_books[event.product_id] = received_ns
        tick = self._quotes.on_book(event.book, event.event_time)
        if tick is not None:
            await self._publish(tick, received_ns)

    async def _on_trades(self, event: TradesReceived) -> None:
        builder = self.builder
        assert builder is not None
        received_ns = self._clock.now_ns()
        builder.on_trades(event.trades)
        for trade in event.trades:
            self._heard[trade.product_id] = time.monotonic()
        for tick in self._quotes.on_trades(event.trades):
            await self._publish(tick, received_ns)

    async def _publish(self, payload: Payload, origin_ns: int) -> None:
        """Publish a tick (kept as its product's latest too) or a book; on a Redis error it
        is dropped (the next one follows)."""
        latest = None
        if isinstance(payload, TickUpdated):
            latest = (self._latest_ticks.key, payload.product_id)
        try:
            await self._publisher.publish(
                new_envelope(payload, self._clock, origin_ts=origin_ns), latest_in=latest
            )
        except RedisError as exc:
            metrics.PUBLISH_ERRORS.labels(payload.STREAM).inc()
            _log.warning("publish failed", stream=payload.STREAM, error=str(exc))
            return
        metrics.PUBLISH_SECONDS.labels(payload.STREAM).observe(
            max(0.0, (self._clock.now_ns() - origin_ns) / 1e9)
        )

    async def _flush_books(self) -> None:
        feed = self.feed
        if feed is None:
            return
        dirty, self._dirty_books = self._dirty_books, {}
        depth = self.options.book_depth
        for product_id, origin_ns in dirty.items():
            book = feed.books.get(product_id)
            if book is None or not book.ready or book.crossed:
                continue
            payload = BookUpdated(
                product_id=product_id,
                bids=tuple(BookLevel(price=p, size=s) for p, s in book.bids(depth)),
                asks=tuple(BookLevel(price=p, size=s) for p, s in book.asks(depth)),
                exchange_time=self._clock.now(),
            )
            await self._publish(payload, origin_ns)

    # -- health and metrics ------------------------------------------------------------

    def data_ages(self) -> dict[str, float | None]:
        now = time.monotonic()
        return {p: (now - self._heard[p]) if p in self._heard else None for p in self.listed}

    def stale_products(self) -> list[str]:
        limit = self.options.stale_after_s
        return [p for p, age in self.data_ages().items() if age is None or age > limit]

    async def _export_metrics(self) -> None:
        for product_id, age in self.data_ages().items():
            if age is not None:
                metrics.DATA_AGE.labels(product_id).set(age)
        feed = self.feed
        if feed is None:
            return
        for channel, count in feed.messages_by_channel.items():
            self._count(metrics.MESSAGES.labels(channel), f"ch:{channel}", count)
        self._count(metrics.GAPS, "gaps", feed.gaps)
        self._count(metrics.RECONNECTS, "reconnects", feed.reconnects)
        self._count(metrics.BOOK_REBUILDS, "rebuilds", feed.book_rebuilds)

    def _count(self, counter: Counter, name: str, total: int) -> None:
        delta = total - self._exported.get(name, 0)
        if delta > 0:
            counter.inc(delta)
            self._exported[name] = total


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
