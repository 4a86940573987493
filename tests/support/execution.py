"""The execution service on a real socket over real Redis and Postgres, and its inputs.

Tests publish what market-data and risk would (``md.books``, ``md.ticks``, ``risk.orders``)
and read what execution reports on ``exec.reports`` and records in Postgres.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.execution.app import ExecutionSettings, bootstrap
from services.execution.service import ExecutionService
from shared.bus import BusKeys, Publisher
from shared.clock import Clock, SimulatedClock
from shared.db import Fill, Order
from shared.messages import (
    BookLevel,
    BookUpdated,
    IntentKind,
    LiquidityPreference,
    Payload,
    PlaceOrder,
    TickUpdated,
    new_envelope,
)
from shared.money import Side
from shared.products import ProductInfo
from tests.support.venue import CONFIG_DIR, serving

__all__ = [
    "ExecutionHandle", "Market", "btc_usd", "execution_service", "fills_of", "orders_of",
    "place_order",
]  # fmt: skip


@dataclass
class ExecutionHandle:
    app: Any
    client: httpx.AsyncClient

    @property
    def service(self) -> ExecutionService:
        service: ExecutionService = self.app.state.execution
        return service


@contextlib.asynccontextmanager
async def execution_service(
    redis_url: str, keys: BusKeys, database: AsyncEngine, clock: SimulatedClock, **settings: Any
) -> AsyncIterator[ExecutionHandle]:
    """PAPER unless told otherwise, with no latency and a fast timer loop."""
    options = {
        "redis_url": redis_url, "bus_prefix": keys.prefix, "config_dir": CONFIG_DIR,
        "exec_timer_interval_s": 0.02, "exec_paper_latency_ms": 0, **settings,
    }  # fmt: skip
    app = bootstrap(ExecutionSettings(**options), database=database, clock=clock)
    async with serving(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield ExecutionHandle(app, client)


@dataclass
class Market:
    """Publishes one product's book and ticks as market-data would."""

    publisher: Publisher
    clock: Clock
    product_id: str = "BTC-USD"

    async def book(self, bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> None:
        book = BookUpdated(
            product_id=self.product_id,
            bids=tuple(BookLevel(price=Decimal(p), size=Decimal(s)) for p, s in bids),
            asks=tuple(BookLevel(price=Decimal(p), size=Decimal(s)) for p, s in asks),
            exchange_time=self.clock.now(),
        )  # fmt: skip
        await self.publish(book)

    async def tick(
        self, bid: str, ask: str, last: str | None = None, last_size: str | None = None
    ) -> None:
        tick = TickUpdated(
            product_id=self.product_id, best_bid=Decimal(bid), best_bid_size=Decimal(1),
            best_ask=Decimal(ask), best_ask_size=Decimal(1),
            last_price=Decimal(last) if last else None,
            last_size=Decimal(last_size) if last_size else None, exchange_time=self.clock.now(),
        )  # fmt: skip
        await self.publish(tick)

    async def publish(self, payload: Payload, **options: Any) -> None:
        await self.publisher.publish(new_envelope(payload, self.clock, **options))


def btc_usd(updated_at: datetime) -> ProductInfo:
    """BTC-USD as the venue lists it: online, every kind of order allowed."""
    return ProductInfo.model_validate({
        "product_id": "BTC-USD", "base_increment": "0.00000001", "quote_increment": "0.01",
        "price_increment": "0.01", "base_min_size": "0.00000001", "base_max_size": "1000",
        "quote_min_size": "1", "quote_max_size": "1000000", "status": "online",
        "trading_disabled": False, "cancel_only": False, "limit_only": False,
        "post_only": False, "entries_allowed": True, "updated_at": updated_at,
    })  # fmt: skip


def place_order(
    intent_id: str, clock: Clock, *, kind: IntentKind = IntentKind.ENTRY,
    side: Side = Side.BUY, quote: str | None = None, base: str | None = None,
    mid: str = "50000", product_id: str = "BTC-USD",
    liquidity: LiquidityPreference = LiquidityPreference.MAKER_FIRST,
) -> PlaceOrder:  # fmt: skip
    return PlaceOrder(
        intent_id=intent_id, kind=kind, product_id=product_id, side=side,
        quote_size=Decimal(quote) if quote else None, base_size=Decimal(base) if base else None,
        reference_mid=Decimal(mid), liquidity=liquidity, issued_at=clock.now(),
    )  # fmt: skip


async def orders_of(database: AsyncEngine, intent_id: str) -> list[Any]:
    async with database.connect() as connection:
        query = select(Order).where(Order.intent_id == intent_id).order_by(Order.id)
        return list((await connection.execute(query)).all())


async def fills_of(database: AsyncEngine, intent_id: str) -> list[Any]:
    async with database.connect() as connection:
        query = (
            select(Fill)
            .join(Order, Order.client_order_id == Fill.client_order_id)
            .where(Order.intent_id == intent_id)
            .order_by(Fill.id)
        )
        return list((await connection.execute(query)).all())
