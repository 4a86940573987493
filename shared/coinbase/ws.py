"""The market-data WebSocket feed: connect, subscribe, keep the level-2 books, reconnect.

One :class:`MarketDataFeed` holds one connection to Coinbase Advanced Trade. It sends one
subscribe per channel (``heartbeats`` always, so quiet channels are not closed by the
server), keeps an :class:`L2Book` per product from ``l2_data``, and hands everything to
``on_event`` as :data:`FeedEvent` values. Every connect and every subscribe/unsubscribe
first takes a token from the injected ``acquire`` (Coinbase allows 8 a second per IP).

Recovery:

* a jump in ``sequence_num`` is a lost message. With ``sequence_scope="connection"`` every
  book is reset and the feed reconnects (a new connection restarts numbering and sends
  fresh snapshots). With ``"product"`` numbering is tracked per (channel, product); a gap
  on ``l2_data`` resets that product's book and resubscribes ``level2`` for it alone.
* no message for ``heartbeat_timeout_s``, no ``subscriptions`` confirmation within
  ``subscribe_timeout_s``, an ``error`` frame, a malformed frame or a closed socket:
  reconnect after a full-jitter backoff. The backoff attempt counter starts again after a
  connection that proved healthy, meaning it delivered at least one ``snapshot`` event.

An exception raised by ``on_event`` is not caught: it ends :meth:`MarketDataFeed.run`.
"""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from shared.coinbase.book import L2Book, SequenceTracker
from shared.coinbase.ws_events import (
    BookChanged,
    BookReset,
    CandlesReceived,
    Connected,
    Disconnected,
    FeedEvent,
    FeedSettings,
    GapDetected,
    TickerReceived,
    TradesReceived,
    UserOrdersReceived,
    data_events,
    has_snapshot,
)
from shared.coinbase.ws_messages import (
    L2DataMessage,
    L2Event,
    SubscriptionsMessage,
    WsEnvelope,
    WsMessage,
    WsProtocolError,
    WsServerError,
    parse_message,
)
from shared.logging import get_logger

__all__ = [
    "BookChanged",
    "BookReset",
    "CandlesReceived",
    "Connected",
    "Disconnected",
    "FeedEvent",
    "FeedSettings",
    "GapDetected",
    "MarketDataFeed",
    "TickerReceived",
    "TradesReceived",
    "UserOrdersReceived",
    "full_jitter_delay",
]

_MAX_FRAME_BYTES = 64 * 2**20  # a deep product's level-2 snapshot runs to megabytes
_CLOSE_TIMEOUT_S = 2.0
_MAX_DOUBLINGS = 32


class _Reconnect(Exception):
    """This connection is done; ``reason`` says why. Never leaves this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def full_jitter_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): uniform in [0, capped doubling]."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt, _MAX_DOUBLINGS))
    return rng.uniform(0, ceiling)


class MarketDataFeed:
    """One WebSocket connection's market data, kept alive until :meth:`stop`.

    Counters for metrics: ``messages_by_channel``, ``gaps``, ``reconnects`` (connections
    after the first), ``book_rebuilds`` (books rebuilt from a snapshot requested after a
    gap), ``ignored_updates`` (level-2 updates for a book awaiting its snapshot),
    ``connected`` and ``last_message_at`` (event-loop monotonic seconds). ``exchange_time``
    is the newest envelope ``timestamp`` received: the venue's clock as this feed last
    heard it. Messages arrive in sequence on one connection, but a stamp does not show
    that every trade before it has arrived: a product's trades are ordered only among
    themselves.
    """

    def __init__(
        self,
        settings: FeedSettings,
        *,
        acquire: Callable[[], Awaitable[object]],
        jwt_factory: Callable[[], str] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        rng: random.Random | None = None,
        on_event: Callable[[FeedEvent], Awaitable[None]],
    ) -> None:
        if "user" in settings.channels and jwt_factory is None:
            raise ValueError("the user channel needs a jwt_factory")
        self.settings = settings
        self._acquire = acquire
        self._jwt_factory = jwt_factory
        self._ssl = ssl
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._log = get_logger(__name__)
        level2 = "level2" in settings.channels
        self.books = {p: L2Book(p) for p in settings.product_ids} if level2 else {}
        self.messages_by_channel: Counter[str] = Counter()
        self.gaps = self.reconnects = self.book_rebuilds = self.ignored_updates = 0
        self.connected = False
        self.last_message_at: float | None = None
        self.exchange_time: datetime | None = None
        self._trackers: dict[tuple[str, str | None], SequenceTracker] = {}
        self._rebuilding: set[str] = set()  # products whose snapshot was re-requested
        self._confirm_deadline: float | None = None
        self._heard_at = 0.0
        self._healthy = self._stopped = self._dispatching = False
        self._connections = 0
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Connect, subscribe and dispatch, reconnecting as needed, until :meth:`stop`."""
        if self._task is not None:
            raise RuntimeError("this feed is already running")
        if self._stopped:
            return
        self._task = asyncio.create_task(self._run_forever(), name="coinbase-ws-feed")
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._stopped or (current is not None and current.cancelling()):
                raise  # run() itself was cancelled, not stopped
        finally:
            self._task = None
        if self.connected:
            self.connected = False
            await self._emit(Disconnected("stopped"))

    def stop(self) -> None:
        """Close the connection and make :meth:`run` return; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        # Never cancel the consumer halfway through an event: the loop checks the flag next.
        if self._task is not None and not self._dispatching:
            self._task.cancel()

    async def _run_forever(self) -> None:
        attempt = 0
        settings = self.settings
        while not self._stopped:
            self._healthy = False
            reason = await self._connection_once()
            if self._stopped:
                return
            await self._lost(reason)
            if self._stopped:
                return
            attempt = 0 if self._healthy else attempt
            delay = full_jitter_delay(
                attempt, settings.backoff_initial_s, settings.backoff_max_s, self._rng
            )
            attempt += 1
            self._log.info(
                "ws reconnecting", reason=reason, delay_s=round(delay, 3), attempt=attempt
            )
            await asyncio.sleep(delay)

    async def _connection_once(self) -> str:
        """Run one connection to its end; the reason it ended."""
        try:
            await self._take_token()
            ws = await self._open()
        except _Reconnect as exc:
            return exc.reason
        try:
            await self._start(ws)
            await self._read_loop(ws)
        except _Reconnect as exc:
            return exc.reason
        finally:
            await ws.close()
        return "stopped"

    async def _take_token(self) -> None:
        try:
            await self._acquire()
        except Exception as exc:  # a limiter outage backs off and retries, it does not end us
            raise _Reconnect(f"rate limiter: {exc!r}") from exc

    async def _open(self) -> ClientConnection:
        options: dict[str, Any] = {"max_size": _MAX_FRAME_BYTES, "close_timeout": _CLOSE_TIMEOUT_S}
        if self._ssl is not None:
            options["ssl"] = self._ssl
        try:
            return await connect(self.settings.url, **options)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise _Reconnect(f"connect failed: {exc!r}") from exc

    async def _start(self, ws: ClientConnection) -> None:
        self._connections += 1
        self.reconnects = self._connections - 1
        self._trackers.clear()  # a new connection numbers its messages afresh
        self._confirm_deadline = None
        for channel in self.settings.subscribed_channels:
            await self._subscribe(ws, "subscribe", channel, self.settings.product_ids)
        self._heard_at = asyncio.get_running_loop().time()
        self.connected = True
        self._log.info("ws connected", url=self.settings.url, channels=self.settings.channels)
        await self._emit(Connected())

    async def _subscribe(
        self,
        ws: ClientConnection,
        kind: Literal["subscribe", "unsubscribe"],
        channel: str,
        product_ids: tuple[str, ...],
    ) -> None:
        await self._take_token()
        frame: dict[str, Any] = {"type": kind, "product_ids": list(product_ids), "channel": channel}
        if self._jwt_factory is not None:
            frame["jwt"] = self._jwt_factory()  # fresh per message: a JWT lives two minutes
        try:
            await ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed as exc:
            raise _Reconnect(f"closed while sending {kind}: {exc}") from exc
        if kind == "subscribe" and self._confirm_deadline is None:
            loop_time = asyncio.get_running_loop().time()
            self._confirm_deadline = loop_time + self.settings.subscribe_timeout_s
        self._log.debug("ws subscription sent", kind=kind, channel=channel, product_ids=product_ids)

    async def _read_loop(self, ws: ClientConnection) -> None:
        while not self._stopped:
            raw = await self._receive(ws)
            self.last_message_at = self._heard_at = asyncio.get_running_loop().time()
            try:
                message = parse_message(raw)
            except WsProtocolError as exc:
                raise _Reconnect(str(exc)) from exc
            await self._handle(ws, message)

    async def _receive(self, ws: ClientConnection) -> str | bytes:
        deadline = self._heard_at + self.settings.heartbeat_timeout_s
        reason = "no message within heartbeat_timeout_s"
        if self._confirm_deadline is not None and self._confirm_deadline < deadline:
            deadline = self._confirm_deadline
            reason = "no subscriptions confirmation within subscribe_timeout_s"
        try:
            async with asyncio.timeout_at(deadline):
                return await ws.recv()
        except TimeoutError:
            raise _Reconnect(reason) from None
        except ConnectionClosed as exc:
            raise _Reconnect(f"connection closed: {exc}") from exc

    async def _handle(self, ws: ClientConnection, message: WsMessage) -> None:
        if isinstance(message, WsServerError):
            self.messages_by_channel["error"] += 1
            self._log.warning("ws server error", message=message.message)
            raise _Reconnect(f"server error: {message.message}")
        self.messages_by_channel[message.channel] += 1
        await self._check_sequence(ws, message)
        if has_snapshot(message):
            self._healthy = True
        if isinstance(message, SubscriptionsMessage):
            self._confirm_deadline = None
            current = message.events[-1].subscriptions if message.events else {}
            self._log.info("ws subscriptions", subscriptions=current)
        elif isinstance(message, L2DataMessage):
            for event in message.events:
                await self._apply_l2(event, message.timestamp)
        for data_event in data_events(message):
            await self._emit(data_event)
        # Only once its events are dispatched: what reads this time may rely on them.
        if self.exchange_time is None or message.timestamp > self.exchange_time:
            self.exchange_time = message.timestamp

    async def _check_sequence(self, ws: ClientConnection, message: WsEnvelope) -> None:
        by_product = self.settings.sequence_scope == "product"
        key = (message.channel, message.product_id) if by_product else ("", None)
        tracker = self._trackers.setdefault(key, SequenceTracker())
        if by_product and isinstance(message, L2DataMessage) and has_snapshot(message):
            tracker.reset()  # a resubscribe may restart this product's numbering
        gap = tracker.observe(message.sequence_num)
        if gap is None:
            return
        self.gaps += 1
        product_id = key[1]
        self._log.warning("ws sequence gap", channel=message.channel, product_id=product_id,
                     expected=gap.expected, received=gap.received)  # fmt: skip
        await self._emit(GapDetected(gap, product_id, message.channel))
        if not by_product:
            for book_product in self.books:
                await self._reset_for_rebuild(book_product)
            raise _Reconnect(f"sequence gap: expected {gap.expected}, got {gap.received}")
        if isinstance(message, L2DataMessage) and product_id in self.books:
            if product_id not in self._rebuilding:
                await self._reset_for_rebuild(product_id)
                await self._subscribe(ws, "unsubscribe", "level2", (product_id,))
                await self._subscribe(ws, "subscribe", "level2", (product_id,))

    async def _reset_for_rebuild(self, product_id: str) -> None:
        self._rebuilding.add(product_id)
        self.books[product_id].reset()
        await self._emit(BookReset(product_id))

    async def _apply_l2(self, event: L2Event, received_at: datetime) -> None:
        book = self.books.get(event.product_id)
        if book is None:
            self._log.debug("ws level2 for an unsubscribed product", product_id=event.product_id)
            return
        is_snapshot = event.type == "snapshot"
        if is_snapshot:
            book.apply_snapshot([(u.side, u.price_level, u.new_quantity) for u in event.updates])
            if event.product_id in self._rebuilding:
                self._rebuilding.discard(event.product_id)
                self.book_rebuilds += 1
        elif not book.ready:
            self.ignored_updates += 1  # it precedes the snapshot this book is waiting for
            return
        else:
            for update in event.updates:
                book.apply_update(update.side, update.price_level, update.new_quantity)
        event_time = max((u.event_time for u in event.updates), default=received_at)
        await self._emit(BookChanged(event.product_id, book, is_snapshot, event_time))

    async def _lost(self, reason: str) -> None:
        """A connection ended while running: tell the consumer, mark the books stale."""
        self._confirm_deadline = None
        if not self.connected:
            self._log.warning("ws connection failed", reason=reason)
            return
        self.connected = False
        self._log.warning("ws disconnected", reason=reason)
        await self._emit(Disconnected(reason))
        for product_id, book in self.books.items():
            if book.ready:
                book.reset()
                await self._emit(BookReset(product_id))

    async def _emit(self, event: FeedEvent) -> None:
        self._dispatching = True
        try:
            await self._on_event(event)
        finally:
            self._dispatching = False
