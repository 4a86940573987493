"""The WebSocket client against exchange-sim: books, gaps and rebuilds, the user channel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from shared.clock import LiveClock
from shared.coinbase.ws import BookReset, FeedEvent, FeedSettings, GapDetected, MarketDataFeed
from tests.support.polling import eventually
from tests.support.venue import CdpTestKey, SimHandle, running_sim

pytestmark = pytest.mark.slow


async def _no_wait() -> None:
    return None


@contextlib.asynccontextmanager
async def feed(sim: SimHandle, scope: str = "connection", **options: Any) -> AsyncIterator[
    tuple[MarketDataFeed, list[FeedEvent]]
]:  # fmt: skip
    events: list[FeedEvent] = []

    async def collect(event: FeedEvent) -> None:
        events.append(event)

    settings = FeedSettings(
        url=sim.ws_url, product_ids=("BTC-USD", "ETH-USD"),
        channels=("level2", "ticker", "market_trades"), sequence_scope=scope,  # type: ignore[arg-type]
        backoff_initial_s=0.05, backoff_max_s=0.2, heartbeat_timeout_s=5, **options,
    )  # fmt: skip
    client = MarketDataFeed(settings, acquire=_no_wait, on_event=collect)
    task = asyncio.create_task(client.run())
    try:
        yield client, events
    finally:
        client.stop()
        await asyncio.wait_for(task, timeout=10)


def _same_book(client: MarketDataFeed, sim: SimHandle, product_id: str) -> bool:
    mine = client.books[product_id]
    venue = sim.venue.books[product_id]
    return mine.ready and mine.bids(5) == venue.bids(5) and mine.asks(5) == venue.asks(5)


@pytest.mark.parametrize("scope", ["connection", "product"])
async def test_the_book_follows_the_venue_and_a_gap_rebuilds_it(scope):
    async with running_sim(sim_sequence_scope=scope) as sim, feed(sim, scope) as (client, events):
        await eventually(lambda: all(client.books[p].ready for p in client.books),
                         within=10, what="both books from their snapshots")  # fmt: skip
        assert client.gaps == 0, "interleaved products must not look like gaps"
        await eventually(lambda: client.messages_by_channel["ticker"] > 0, within=10,
                         what="ticker messages")  # fmt: skip
        await sim.faults(ws_drop_next=1)
        await eventually(lambda: client.book_rebuilds >= 1, within=10, what="a rebuilt book")
        assert client.gaps >= 1
        assert any(isinstance(e, GapDetected) for e in events)
        assert any(isinstance(e, BookReset) for e in events)
        await sim.faults()
        # Compare while the market is still: between two venue steps the books must agree.
        await eventually(lambda: _same_book(client, sim, "BTC-USD"), within=10,
                         what="the client's book equal to the venue's")  # fmt: skip


async def test_a_dropped_connection_reconnects_and_resubscribes():
    async with running_sim() as sim, feed(sim) as (client, _):
        await eventually(lambda: client.connected and client.books["BTC-USD"].ready, within=10,
                         what="a first connection")  # fmt: skip
        response = await sim.admin.post("/sim/ws/disconnect")
        assert response.json()["disconnected"] >= 1
        await eventually(lambda: client.reconnects >= 1 and client.books["BTC-USD"].ready,
                         within=10, what="a reconnect with a fresh snapshot")  # fmt: skip


async def _messages(socket: Any, count: int, channel: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = orjson.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        if message.get("channel") == channel or message.get("type") == "error":
            found.append(message)
    return found


async def test_the_user_channel_needs_a_jwt_and_reports_orders():
    key = CdpTestKey.generate()
    async with running_sim(key) as sim, connect(sim.ws_url) as socket:
        await socket.send(orjson.dumps({"type": "subscribe", "channel": "user"}).decode())
        (refused,) = await _messages(socket, 1, "user")
        assert refused == {"type": "error", "message": "authentication failure"}
        token = key.credentials().jwt_for("GET", "", "", LiveClock())
        await socket.send(
            orjson.dumps(
                {"type": "subscribe", "channel": "user", "product_ids": [], "jwt": token}
            ).decode()
        )
        (snapshot,) = await _messages(socket, 1, "user")
        assert snapshot["events"][0]["type"] == "snapshot"
        body = {
            "client_order_id": str(uuid.uuid4()),
            "product_id": "BTC-USD",
            "side": "BUY",
            "order_configuration": {"market_market_ioc": {"quote_size": "10"}},
        }
        host = sim.base_url.split("//")[1]
        auth = key.credentials().jwt_for("POST", host, "/api/v3/brokerage/orders", LiveClock())
        placed = await sim.admin.post("/api/v3/brokerage/orders", json=body,
                                      headers={"Authorization": f"Bearer {auth}"})  # fmt: skip
        assert placed.json()["success"] is True
        (update,) = await _messages(socket, 1, "user")
        order = update["events"][0]["orders"][0]
        assert order["client_order_id"] == body["client_order_id"]
        assert order["status"] == "FILLED" and Decimal(order["cumulative_quantity"]) > 0


async def test_a_connection_that_never_subscribes_is_closed():
    async with running_sim(sim_subscribe_timeout_s=0.3) as sim, connect(sim.ws_url) as socket:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), timeout=5)


async def test_a_junk_first_frame_does_not_stop_the_subscribe_timeout():
    async with running_sim(sim_subscribe_timeout_s=0.5) as sim, connect(sim.ws_url) as socket:
        await socket.send("not json")
        (error,) = await _messages(socket, 1, "none")
        assert error["type"] == "error"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), timeout=5)
