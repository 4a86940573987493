"""exchange-sim's WebSocket endpoint (``/ws``): Coinbase's market-data and user channels.

One :class:`Subscriber` per connection numbers its messages (``sequence_num``) per
connection, like Coinbase, or per product (``SIM_SEQUENCE_SCOPE=product``), so clients
can be tested against both readings. A lost message (fault injection) still takes its
number: the client sees the gap. A connection that sends no subscribe within the
subscribe timeout is closed, as Coinbase does.

Every message is stamped with the venue's time, how far its markets have been moved, and
never with a later reading of the clock: the markets move in steps, and a step that runs
late must not leave a message claiming a moment whose prints have not happened yet (a
client takes the venue's candles up to a message's stamp as final).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from services.exchange_sim.auth import JwtVerifier, Unauthenticated
from services.exchange_sim.faults import FaultPlan
from services.exchange_sim.limits import WindowLimiter
from services.exchange_sim.shapes import rfc3339
from services.exchange_sim.venue import Venue, VenueEvents
from services.exchange_sim.ws_feed import (
    Message,
    candles_message,
    l2_message,
    l2_snapshot,
    ticker_message,
    trades_message,
    user_message,
)
from shared.clock import Clock
from shared.logging import get_logger

__all__ = ["CHANNELS", "Subscriber", "WsHub"]

_log = get_logger("exchange_sim.ws")
CHANNELS = ("heartbeats", "ticker", "level2", "market_trades", "candles", "user")
QUEUE_LIMIT = 10_000


class Subscriber:
    """One connection: what it subscribed to, its numbering, and its outgoing queue."""

    def __init__(self, scope: Literal["connection", "product"]) -> None:
        self.subscriptions: dict[str, set[str]] = defaultdict(set)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self._scope = scope
        self._sequence: dict[tuple[str, str | None], int] = defaultdict(int)
        self.heartbeats = 0

    def wants(self, channel: str, product_id: str | None) -> bool:
        products = self.subscriptions.get(channel)
        if not products:
            return False
        return product_id is None or product_id in products

    def next_sequence(self, channel: str, product_id: str | None) -> int:
        key = ("", None) if self._scope == "connection" else (channel, product_id)
        number = self._sequence[key]
        self._sequence[key] += 1
        return number

    def push(self, frame: bytes | None) -> bool:
        """False when the client reads too slowly: the connection is then dropped."""
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True


class WsHub:
    def __init__(
        self,
        venue: Venue,
        clock: Clock,
        faults: FaultPlan,
        verifier: JwtVerifier,
        *,
        connect_limit: WindowLimiter,
        scope: Literal["connection", "product"] = "connection",
        subscribe_timeout_s: float = 5.0,
    ) -> None:
        self._venue = venue
        self._clock = clock
        self._faults = faults
        self._verifier = verifier
        self._limit = connect_limit
        self._scope = scope
        self._subscribe_timeout_s = subscribe_timeout_s
        self.subscribers: set[Subscriber] = set()

    # -- fan-out -----------------------------------------------------------------------

    def send(self, subscriber: Subscriber, message: Message) -> None:
        channel, product_id, events = message
        number = subscriber.next_sequence(channel, product_id)
        if channel != "subscriptions" and self._faults.drop_ws_message(channel):
            return  # lost on the way: the number is used, the client sees a gap
        envelope = {
            "channel": channel,
            "client_id": "",
            "timestamp": rfc3339(self._venue.time),
            "sequence_num": number,
            "events": events,
        }
        if not subscriber.push(orjson.dumps(envelope)):
            self.drop(subscriber)

    def drop(self, subscriber: Subscriber) -> None:
        """Stop sending to ``subscriber``: its writer closes the socket, ending its reader."""
        self.subscribers.discard(subscriber)
        while subscriber.queue.full():  # a reader too slow to keep up loses its backlog
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)

    def disconnect_all(self) -> int:
        """Close every connection (fault injection); returns how many."""
        victims = list(self.subscribers)
        for subscriber in victims:
            self.drop(subscriber)
        return len(victims)

    def publish(self, events: VenueEvents, now: datetime) -> None:
        """Announce what changed; each message is built once, then sent to who wants it."""
        by_product: dict[str, list[Any]] = defaultdict(list)
        for trade in events.trades:
            by_product[trade.product_id].append(trade)
        touched = set(events.book_changes) | set(by_product)
        wanted: list[tuple[str, Message]] = [
            ("level2", l2_message(product_id, changes, now, "update"))
            for product_id, changes in events.book_changes.items()
        ]
        wanted += [
            ("market_trades", trades_message(product_id, trades, "update"))
            for product_id, trades in by_product.items()
        ]
        for product_id in touched:
            ticker = ticker_message(self._venue, product_id, "update")
            if ticker is not None:
                wanted.append(("ticker", ticker))
        if events.orders:
            wanted.append(("user", user_message(events.orders, self._venue, "update")))
        for subscriber in list(self.subscribers):
            for channel, message in wanted:
                if subscriber.wants(channel, message[1]):  # user messages carry no product
                    self.send(subscriber, message)

    def tick(self) -> None:
        """Once a second: heartbeats and candle updates."""
        for subscriber in list(self.subscribers):
            if subscriber.subscriptions.get("heartbeats"):
                subscriber.heartbeats += 1
                now = self._venue.time
                beat = {
                    "current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC"),
                    "heartbeat_counter": subscriber.heartbeats,
                }
                self.send(subscriber, ("heartbeats", None, [beat]))
            for product_id in subscriber.subscriptions.get("candles", set()):
                self._maybe(subscriber, "candles",
                            candles_message(self._venue, product_id, "update"))  # fmt: skip

    def _maybe(self, subscriber: Subscriber, channel: str, message: Message | None) -> None:
        if message is not None and subscriber.wants(channel, message[1]):
            self.send(subscriber, message)

    # -- one connection ----------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client else "unknown"
        if not self._limit.check(client, self._clock.now().timestamp()).allowed:
            await websocket.close(code=1008, reason="rate limit exceeded")
            return
        await websocket.accept()
        subscriber = Subscriber(self._scope)
        self.subscribers.add(subscriber)
        writer = asyncio.create_task(self._write(websocket, subscriber))
        try:
            await self._read(websocket, subscriber, client)
        except WebSocketDisconnect:
            pass
        finally:
            self.drop(subscriber)
            with contextlib.suppress(Exception):
                await writer
            if websocket.application_state is not WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close()

    async def _write(self, websocket: WebSocket, subscriber: Subscriber) -> None:
        while (frame := await subscriber.queue.get()) is not None:
            await websocket.send_text(frame.decode())
        with contextlib.suppress(Exception):
            await websocket.close()

    async def _read(self, websocket: WebSocket, subscriber: Subscriber, client: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._subscribe_timeout_s
        while subscriber in self.subscribers:
            # Until a subscribe has succeeded, the clock of the subscribe timeout runs.
            subscribed = any(subscriber.subscriptions.values())
            timeout = None if subscribed else max(0.0, deadline - loop.time())
            try:
                raw = await asyncio.wait_for(websocket.receive_text(), timeout)
            except TimeoutError:
                _log.info("no subscribe in time; closing", client=client)
                return
            self._handle(subscriber, raw, client)

    def _handle(self, subscriber: Subscriber, raw: str, client: str) -> None:
        try:
            request = orjson.loads(raw)
            kind, channel = request["type"], request["channel"]
            products = [str(p) for p in request.get("product_ids") or []]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._error(subscriber, "malformed subscribe message")
            return
        if kind not in ("subscribe", "unsubscribe") or channel not in CHANNELS:
            self._error(subscriber, f"unsupported {kind!r} for channel {channel!r}")
            return
        if not self._limit.check(client, self._clock.now().timestamp()).allowed:
            self._error(subscriber, "rate limit exceeded")
            self.drop(subscriber)
            return
        unknown = [p for p in products if p not in self._venue.products]
        if unknown:
            self._error(subscriber, f"unknown product ids {unknown}")
            return
        if channel == "user" and kind == "subscribe" and not self._authorized(request):
            self._error(subscriber, "authentication failure")
            return
        if kind == "subscribe":
            self._subscribe(subscriber, channel, products)
        else:
            subscriber.subscriptions[channel].difference_update(products or set())
            if not products:
                subscriber.subscriptions.pop(channel, None)
            self._confirm(subscriber)

    def _authorized(self, request: dict[str, Any]) -> bool:
        token = request.get("jwt")
        if not isinstance(token, str):
            return False
        try:
            self._verifier.verify(token, self._clock.now())
        except Unauthenticated:
            return False
        return True

    def _subscribe(self, subscriber: Subscriber, channel: str, products: list[str]) -> None:
        targets = products or (["*"] if channel in ("heartbeats", "user") else [])
        subscriber.subscriptions[channel].update(targets)
        self._confirm(subscriber)
        now = self._venue.time
        for product_id in products:
            self._snapshot(subscriber, channel, product_id, now)
        if channel == "user":
            open_orders = self._venue.engine.open_orders()
            self.send(subscriber, user_message(open_orders, self._venue, "snapshot"))

    def _snapshot(
        self, subscriber: Subscriber, channel: str, product_id: str, now: datetime
    ) -> None:
        venue = self._venue
        if channel == "level2":
            self.send(subscriber, l2_snapshot(venue, product_id, now))
        elif channel == "ticker":
            self._maybe(subscriber, channel, ticker_message(venue, product_id, "snapshot"))
        elif channel == "market_trades":
            recent = list(venue.trades[product_id])[:50]
            self.send(subscriber, trades_message(product_id, recent, "snapshot"))
        elif channel == "candles":
            self._maybe(subscriber, channel, candles_message(venue, product_id, "snapshot"))

    def _confirm(self, subscriber: Subscriber) -> None:
        listing = {
            channel: sorted(products)
            for channel, products in subscriber.subscriptions.items()
            if products
        }
        self.send(subscriber, ("subscriptions", None, [{"subscriptions": listing}]))

    def _error(self, subscriber: Subscriber, message: str) -> None:
        subscriber.push(orjson.dumps({"type": "error", "message": message}))
