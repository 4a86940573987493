"""A scripted Coinbase Advanced Trade WebSocket server on 127.0.0.1, for client tests.

It speaks the venue's protocol over a real socket: it records every client message,
answers each subscribe and unsubscribe with a ``subscriptions`` frame, and closes a
connection that sends no subscribe within ``subscribe_within_s``. It numbers every frame
it sends: ``sequence_num`` counts per connection from 0, or with ``numbering="product"``
per (channel, product), each from its own offset. Beyond that each connection plays its
own :class:`Script`: send frames (a dropped one takes its number but is never sent), send
a raw frame, wait for a subscribe, close. After its script a connection stays open and
silent, bar confirmations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = [
    "EVENT_TIME",
    "AwaitSubscribe",
    "Close",
    "Script",
    "ScriptedServer",
    "Send",
    "SendRaw",
    "ServedConnection",
    "l2_snapshot",
    "l2_update",
]

EVENT_TIME = "2023-02-09T20:32:50.714964855Z"
Level = tuple[Literal["bid", "offer"], str, str]  # side, price_level, new_quantity


@dataclass(frozen=True)
class Send:
    """One envelope on ``channel``; ``drop`` numbers it but never sends it (a lost frame)."""

    channel: str
    events: tuple[dict[str, Any], ...]
    drop: bool = False


@dataclass(frozen=True)
class SendRaw:
    """A frame sent exactly as given, without an envelope (e.g. an error frame)."""

    frame: dict[str, Any]


@dataclass(frozen=True)
class AwaitSubscribe:
    """Wait until ``count`` subscribes to ``channel`` (naming ``product_id``) have arrived."""

    channel: str
    product_id: str | None = None
    count: int = 1


@dataclass(frozen=True)
class Close:
    """Close the connection from the server's side."""


Step = Send | SendRaw | AwaitSubscribe | Close


@dataclass(frozen=True)
class Script:
    steps: tuple[Step, ...] = ()
    confirm: bool = True  # False: never answer a subscribe with a subscriptions frame


@dataclass
class ServedConnection:
    """What one connection saw: the client's messages and the frames sent to it."""

    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.received if message.get("type") == kind]


def l2_snapshot(product_id: str, *levels: Level, drop: bool = False) -> Send:
    return Send("l2_data", (_l2_event("snapshot", product_id, levels),), drop)


def l2_update(product_id: str, *levels: Level, drop: bool = False) -> Send:
    return Send("l2_data", (_l2_event("update", product_id, levels),), drop)


def _l2_event(kind: str, product_id: str, levels: Sequence[Level]) -> dict[str, Any]:
    updates = [
        {"side": side, "event_time": EVENT_TIME, "price_level": price, "new_quantity": size}
        for side, price, size in levels
    ]
    return {"type": kind, "product_id": product_id, "updates": updates}


def _product_of(events: Sequence[dict[str, Any]]) -> str | None:
    """The product a frame is about: its first event's, or that of the event's first item."""
    if not events:
        return None
    first = events[0]
    if isinstance(first.get("product_id"), str):
        return str(first["product_id"])
    for value in first.values():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return value[0].get("product_id")
    return None


class _Session:
    """One accepted connection: its reader, its numbering and its script."""

    def __init__(
        self, ws: ServerConnection, record: ServedConnection, server: ScriptedServer
    ) -> None:
        self.ws, self.record, self.server = ws, record, server
        self.counters: dict[tuple[str, str | None], int] = {}
        self.subscriptions: dict[str, list[str]] = {}
        self.send_lock = asyncio.Lock()
        self.changed = asyncio.Condition()

    async def send(self, channel: str, events: Sequence[dict[str, Any]], drop: bool) -> None:
        async with self.send_lock:  # numbers leave in the order they were given
            by_product = self.server.numbering == "product"
            key = (channel, _product_of(events)) if by_product else ("", None)
            # Keys count from 0, 100, 200... in order of first use, as per-product numbers
            # do not line up: read connection-wide they jump.
            number = self.counters.setdefault(key, 100 * len(self.counters))
            self.counters[key] = number + 1
            if drop:
                return
            frame = {"channel": channel, "client_id": "", "timestamp": EVENT_TIME,
                     "sequence_num": number, "events": list(events)}  # fmt: skip
            self.record.sent.append(frame)
            await self.ws.send(json.dumps(frame))

    async def read(self, script: Script) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                self.record.received.append(message)
                self.server.journal.append(str(message.get("type")))
                if message.get("type") in ("subscribe", "unsubscribe"):
                    self._track(message)
                    if script.confirm:
                        await self.send("subscriptions", [self._confirmation()], drop=False)
                async with self.changed:
                    self.changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.record.closed = True
            async with self.changed:
                self.changed.notify_all()

    def _track(self, message: dict[str, Any]) -> None:
        products = self.subscriptions.setdefault(message["channel"], [])
        for product_id in message.get("product_ids", []):
            if message["type"] == "subscribe" and product_id not in products:
                products.append(product_id)
            elif message["type"] == "unsubscribe" and product_id in products:
                products.remove(product_id)

    def _confirmation(self) -> dict[str, Any]:
        current = {channel: list(products) for channel, products in self.subscriptions.items()}
        return {"subscriptions": current}

    def subscribed(self, channel: str | None, product_id: str | None, count: int) -> bool:
        found = [
            m
            for m in self.record.of_type("subscribe")
            if (channel is None or m.get("channel") == channel)
            and (product_id is None or product_id in m.get("product_ids", []))
        ]
        return len(found) >= count or self.record.closed

    async def wait_subscribed(self, channel: str | None, product_id: str | None, n: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.subscribed(channel, product_id, n))

    async def play(self, script: Script) -> None:
        for step in script.steps:
            if self.record.closed:
                return
            match step:
                case Send():
                    await self.send(step.channel, step.events, step.drop)
                case SendRaw():
                    await self.ws.send(json.dumps(step.frame))
                case AwaitSubscribe():
                    await self.wait_subscribed(step.channel, step.product_id, step.count)
                case Close():
                    await self.ws.close()


class ScriptedServer:
    """``async with ScriptedServer([Script(...), ...]) as server:`` then connect to ``url``.

    Connection ``i`` plays ``scripts[i]``; later connections play an empty script.
    ``journal`` gets "connect" for each accepted connection and the ``type`` of each
    client message, in order; tests may append their own entries to the same list.
    """

    def __init__(
        self,
        scripts: Sequence[Script] = (),
        *,
        numbering: Literal["connection", "product"] = "connection",
        journal: list[str] | None = None,
        subscribe_within_s: float = 5.0,
    ) -> None:
        self.scripts = list(scripts)
        self.numbering = numbering
        self.journal: list[str] = [] if journal is None else journal
        self.subscribe_within_s = subscribe_within_s
        self.connections: list[ServedConnection] = []
        self.url = ""
        self._server: Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        index = len(self.connections)
        record = ServedConnection()
        self.connections.append(record)
        self.journal.append("connect")
        script = self.scripts[index] if index < len(self.scripts) else Script()
        session = _Session(ws, record, self)
        reader = asyncio.create_task(session.read(script))
        try:
            async with asyncio.timeout(self.subscribe_within_s):
                await session.wait_subscribed(None, None, 1)
        except TimeoutError:
            await ws.close(reason="no subscribe")  # what the venue does after 5 s
        with contextlib.suppress(ConnectionClosed):
            await session.play(script)
        await reader  # the connection stays open until one side closes it
