"""A local Coinbase market-data WebSocket that sends frames on a fixed schedule.

:class:`PacedFeed` speaks enough of the venue's protocol for market-data's feed client:
it confirms each subscribe, sends a level-2 snapshot per product, then ``rate`` frames a
second from :class:`WaveMarket`, numbered per connection and stamped with the clock the
services share. Each frame is one tick for market-data: a new best bid or ask, or a trade
at a new price.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from services.exchange_sim.catalog import listed
from services.exchange_sim.shapes import rfc3339
from services.exchange_sim.venue import BookChange, MarketTrade
from services.exchange_sim.ws_feed import Message, l2_message, trades_message
from shared.clock import ScaledClock
from shared.coinbase.book import BookSide
from shared.money import Side

__all__ = ["PacedFeed", "WaveMarket"]

WAVE_CANDLES = 6  # one price wave in one-minute candles
AMPLITUDE = 0.01  # of the start price
TRADE_EVERY = 5  # every fifth frame of a product is a trade, the others move the book
LEVEL_SIZE = Decimal("100")


@dataclass
class _Product:
    product_id: str
    start: float
    increment: Decimal
    phase: float
    bid: Decimal
    ask: Decimal
    last: Decimal | None = None
    frames: int = 0


class WaveMarket:
    """Each product's mid swings ``AMPLITUDE`` around its start price once every
    ``WAVE_CANDLES`` minutes of market time (``clock``'s), the products' waves spread
    evenly over one wave, so their crossovers fall on different candles.

    Every frame is news for market-data's quote tracker: the spread alternates between
    two and three increments, so a book frame always moves the bid or the ask, and a
    trade never prints at the last trade's price.
    """

    def __init__(self, products: Sequence[str], clock: ScaledClock) -> None:
        self._clock = clock
        self._origin = clock.now().timestamp()
        self._products = []
        for index, (product_id, listing) in enumerate(listed(list(products)).items()):
            start, increment = listing.profile.start_price, listing.profile.price_increment
            phase = 2 * math.pi * index / len(products)
            self._products.append(_Product(product_id, float(start), increment, phase,
                                           start - increment, start + increment))  # fmt: skip
        self._frames = 0
        self._trade_ids = 0

    def now(self) -> datetime:
        return self._clock.now()

    def snapshot(self, product_id: str) -> list[BookChange]:
        product = next(p for p in self._products if p.product_id == product_id)
        return [BookChange(BookSide.BID, product.bid, LEVEL_SIZE),
                BookChange(BookSide.OFFER, product.ask, LEVEL_SIZE)]  # fmt: skip

    def next_frame(self) -> Message:
        """The next frame's message, products in turn."""
        product = self._products[self._frames % len(self._products)]
        self._frames += 1
        product.frames += 1
        now = self.now()
        if product.frames % TRADE_EVERY == 0:
            return self._trade(product, now)
        return self._book(product, now)

    def _book(self, product: _Product, now: datetime) -> Message:
        minutes = (now.timestamp() - self._origin) / 60
        angle = 2 * math.pi * minutes / WAVE_CANDLES + product.phase
        mid = product.start * (1 + AMPLITUDE * math.sin(angle))
        ticks = round(mid / float(product.increment))
        bid = product.increment * (ticks - 1)
        ask = product.increment * (ticks + 1 + product.frames % 2)
        changes = []
        if bid != product.bid:
            changes += [BookChange(BookSide.BID, product.bid, Decimal(0)),
                        BookChange(BookSide.BID, bid, LEVEL_SIZE)]  # fmt: skip
        if ask != product.ask:
            changes += [BookChange(BookSide.OFFER, product.ask, Decimal(0)),
                        BookChange(BookSide.OFFER, ask, LEVEL_SIZE)]  # fmt: skip
        product.bid, product.ask = bid, ask
        return l2_message(product.product_id, changes, now, "update")

    def _trade(self, product: _Product, now: datetime) -> Message:
        buy = (product.frames // TRADE_EVERY) % 2 == 0
        if (product.ask if buy else product.bid) == product.last:
            buy = not buy
        price = product.ask if buy else product.bid
        product.last = price
        self._trade_ids += 1
        trade = MarketTrade(str(self._trade_ids), product.product_id, price, Decimal("0.01"),
                            Side.BUY if buy else Side.SELL, now)  # fmt: skip
        return trades_message(product.product_id, [trade], "update")


class PacedFeed:
    """Coinbase's market-data WebSocket on 127.0.0.1, paced: ``rate`` frames a second.

    Confirms each subscribe, sends each product's level-2 snapshot, and once both level2
    and market_trades are subscribed, sends frames on a fixed schedule (a late frame is
    sent at once, the schedule does not slip). Frames are numbered per connection.
    """

    def __init__(self, products: Sequence[str], rate: int, clock: ScaledClock) -> None:
        self.products = tuple(products)
        self.market = WaveMarket(products, clock)
        self.rate = rate
        self.url = ""
        self._server: Server | None = None
        self._paused = False

    async def __aenter__(self) -> PacedFeed:
        self._server = await serve(self._serve, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def pause(self) -> None:
        """No more frames (the connection stays open)."""
        self._paused = True

    async def _serve(self, ws: ServerConnection) -> None:
        numbers = iter(range(1 << 62))
        lock = asyncio.Lock()
        subscribed: set[str] = set()
        pacing: asyncio.Task[None] | None = None

        async def send(channel: str, events: list[dict[str, Any]]) -> None:
            async with lock:  # numbers leave in order
                frame = {"channel": channel, "client_id": "", "sequence_num": next(numbers),
                         "timestamp": rfc3339(self.market.now()), "events": events}  # fmt: skip
                await ws.send(orjson.dumps(frame).decode())

        try:
            async for raw in ws:
                request = orjson.loads(raw)
                if request.get("type") != "subscribe":
                    continue
                subscribed.add(request["channel"])
                listing = {channel: list(self.products) for channel in sorted(subscribed)}
                await send("subscriptions", [{"subscriptions": listing}])
                for product_id in request.get("product_ids") or []:
                    if request["channel"] == "level2":
                        changes = self.market.snapshot(product_id)
                        now = self.market.now()
                        await send(*_events(l2_message(product_id, changes, now, "snapshot")))
                    elif request["channel"] == "market_trades":
                        await send(*_events(trades_message(product_id, [], "snapshot")))
                if pacing is None and {"level2", "market_trades"} <= subscribed:
                    pacing = asyncio.create_task(self._pace(send))
        except ConnectionClosed:
            pass
        finally:
            if pacing is not None:
                pacing.cancel()

    async def _pace(self, send: Callable[[str, list[dict[str, Any]]], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        index = 0
        while not self._paused:
            delay = started + index / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await send(*_events(self.market.next_frame()))
            index += 1


def _events(message: Message) -> tuple[str, list[dict[str, Any]]]:
    return message[0], message[2]
