"""The risk service on a real socket over real Redis and Postgres, and a stand-in executor.

``FakeExecution`` plays execution's side of the contract: it reads ``risk.orders``,
records each fill in Postgres (``orders`` and ``fills``, as execution does) before it
publishes ``OrderFilled`` and ``IntentFinished`` on ``exec.reports``, and honours
``CancelOrders`` for the orders it holds open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.execution.orders import client_order_id
from services.risk.app import RiskSettings, bootstrap
from services.risk.ctl import ControlAuth
from services.risk.service import RiskService
from shared.bus import BusKeys, ConsumerSettings, Delivery, StreamConsumer
from shared.clock import SimulatedClock
from shared.db import Writer, record_fill, record_order
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import (
    CancelOrders,
    Envelope,
    IntentFinished,
    IntentKind,
    Liquidity,
    OrderFilled,
    OrderStatus,
    Payload,
    PlaceOrder,
    TradingMode,
    decode,
    new_envelope,
)
from shared.money import Rounding, Side, quantize
from shared.products import ProductCatalog, ProductInfo
from tests.support.venue import CONFIG_DIR, serving

__all__ = [
    "store_taker_fill",
    "TOKEN", "FakeExecution", "RiskHandle", "risk_service", "seed_catalog", "store_taker_fill",
    "stream_payloads",
]  # fmt: skip

TOKEN = "test-control-token-0123456789"
FEE_RATE = Decimal("0.006")


async def seed_catalog(redis: Redis, keys: BusKeys, clock: SimulatedClock) -> None:
    """What market-data would have cached: every universe product, trading normally."""
    infos = []
    for product in ("BTC-USD", "ETH-USD", "SOL-USD", "AVAX-USD", "ADA-USD", "XRP-USD",
                    "LTC-USD", "LINK-USD", "UNI-USD"):  # fmt: skip
        infos.append(ProductInfo.model_validate({
            "product_id": product, "base_increment": "0.00000001", "quote_increment": "0.01",
            "price_increment": "0.01", "base_min_size": "0.00000001", "base_max_size": "1000000",
            "quote_min_size": "1", "quote_max_size": "1000000", "status": "online",
            "trading_disabled": False, "cancel_only": False, "limit_only": False,
            "post_only": False, "entries_allowed": True, "updated_at": clock.now(),
        }))  # fmt: skip
    await ProductCatalog(redis, keys.prefix).save(infos)


async def stream_payloads(redis: Redis, keys: BusKeys, stream: str) -> list[Payload]:
    """Every payload on ``stream``, oldest first."""
    entries = await redis.xrange(keys.stream(stream))
    return [decode(fields[b"env"]).data for _entry_id, fields in entries]


@dataclass
class RiskHandle:
    app: Any
    client: httpx.AsyncClient
    clock: SimulatedClock

    @property
    def service(self) -> RiskService:
        service: RiskService = self.app.state.risk
        return service


@contextlib.asynccontextmanager
async def risk_service(
    redis_url: str, keys: BusKeys, database: AsyncEngine, clock: SimulatedClock, **settings: Any
) -> AsyncIterator[RiskHandle]:
    options = {
        "redis_url": redis_url, "bus_prefix": keys.prefix, "config_dir": CONFIG_DIR,
        "control_api_token": TOKEN, "risk_supervise_interval_s": 0.05, **settings,
    }  # fmt: skip
    app = bootstrap(RiskSettings(**options), database=database, clock=clock)
    async with serving(app) as port:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", auth=ControlAuth(TOKEN, "tester"), timeout=10
        ) as client:
            yield RiskHandle(app, client, clock)


async def store_taker_fill(
    database: AsyncEngine, intent_id: str, product_id: str, side: Side, price: Decimal,
    size: Decimal, fee: Decimal, *, arrival_mid: Decimal, filled_at: datetime,
    arrival_time: datetime,
) -> OrderFilled:  # fmt: skip
    """One taker order of ``intent_id`` filled whole at ``price``, in Postgres as execution
    records it (PAPER); returns the fill."""
    coid = client_order_id(intent_id, 0)
    request = OrderRequest(coid, product_id, side, OrderKind.MARKET_IOC, base_size=size)
    filled = OrderFilled(
        client_order_id=coid, intent_id=intent_id, trade_id=f"t-{coid}", product_id=product_id,
        side=side, price=price, size=size, fee=fee, liquidity=Liquidity.TAKER,
        arrival_mid=arrival_mid, mode=TradingMode.PAPER, filled_at=filled_at,
    )  # fmt: skip
    writer = Writer(database)  # for this one write: nothing is held after it
    try:
        async with writer.batch() as batch:
            await record_order(batch, request, intent_id=intent_id, status=OrderStatus.FILLED,
                               mode=TradingMode.PAPER, filled_size=size,
                               average_price=price)  # fmt: skip
            await record_fill(batch, filled, venue="paper", arrival_time=arrival_time)
    finally:
        await writer.close()
    return filled


@dataclass
class FakeExecution:
    """Fills risk's orders at ``prices``; holds entries open while ``hold_entries``."""

    redis: Redis
    keys: BusKeys
    database: AsyncEngine
    clock: SimulatedClock
    prices: dict[str, Decimal]
    hold_entries: bool = False
    exit_fill_ratio: Decimal = Decimal(1)
    held: dict[str, PlaceOrder] = field(default_factory=dict)
    seen: list[Payload] = field(default_factory=list)

    async def handle(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        command = envelope.data
        self.seen.append(command)
        if isinstance(command, CancelOrders):
            for intent_id, order in list(self.held.items()):
                if order.kind in command.kinds and (
                    not command.product_ids or order.product_id in command.product_ids
                ):
                    del self.held[intent_id]
                    delivery.publish(self._envelope(self._finished(order, OrderStatus.CANCELLED)))
        elif isinstance(command, PlaceOrder):
            if command.kind is IntentKind.ENTRY and self.hold_entries:
                self.held[command.intent_id] = command
                return
            await self._fill(command, delivery)

    async def _fill(self, order: PlaceOrder, delivery: Delivery) -> None:
        price = self.prices[order.product_id]
        if order.base_size is not None:
            size = order.base_size
            if order.kind is not IntentKind.ENTRY:
                size = quantize(size * self.exit_fill_ratio, Decimal("0.00000001"), Rounding.FLOOR)
        else:
            assert order.quote_size is not None
            size = quantize(order.quote_size / price, Decimal("0.00000001"), Rounding.FLOOR)
        if size == 0:  # nothing to be had: the venue expires the order unfilled
            delivery.publish(self._envelope(self._finished(order, OrderStatus.EXPIRED)))
            return
        fee = quantize(price * size * FEE_RATE, Decimal("0.00000001"), Rounding.HALF_EVEN)
        filled = await store_taker_fill(
            self.database, order.intent_id, order.product_id, order.side, price, size, fee,
            arrival_mid=order.reference_mid, filled_at=self.clock.now(),
            arrival_time=order.issued_at,
        )  # fmt: skip
        delivery.publish(self._envelope(filled))
        delivery.publish(self._envelope(self._finished(order, OrderStatus.FILLED, size, price)))

    def _finished(
        self, order: PlaceOrder, status: OrderStatus, size: Decimal = Decimal(0),
        price: Decimal = Decimal(0),
    ) -> IntentFinished:  # fmt: skip
        return IntentFinished(
            intent_id=order.intent_id, kind=order.kind, product_id=order.product_id,
            side=order.side, status=status, filled_base=size, filled_quote=size * price,
            mode=TradingMode.PAPER, finished_at=self.clock.now(),
        )  # fmt: skip

    def _envelope(self, payload: Payload) -> Envelope[Payload]:
        return new_envelope(payload, self.clock)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeExecution]:
        consumer = StreamConsumer(
            self.redis,
            ConsumerSettings(
                stream="risk.orders", group="fake-execution", consumer="fake-1", block_ms=50
            ),  # fmt: skip
            self.handle,
            keys=self.keys,
        )
        task = asyncio.create_task(consumer.run())
        try:
            yield self
        finally:
            consumer.stop()
            await asyncio.wait_for(task, timeout=10)
