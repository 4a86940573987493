"""Recording orders and fills in a real Postgres: a replayed fill is never counted twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from shared.db import Fill, Order, Writer, record_fill, record_order, upgrade
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import Liquidity, OrderFilled, OrderStatus, TradingMode
from shared.money import Side

AT = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
REQUEST = OrderRequest(
    client_order_id="c0ffee-0", product_id="ETH-USD", side=Side.BUY, kind=OrderKind.LIMIT_GTC,
    base_size=Decimal("0.5000"), limit_price=Decimal("2999.99"), post_only=True,
)  # fmt: skip


def _fill(trade_id: str, size: str) -> OrderFilled:
    return OrderFilled(
        client_order_id=REQUEST.client_order_id, intent_id="entry:1", trade_id=trade_id,
        product_id="ETH-USD", side=Side.BUY, price=Decimal("2999.99"), size=Decimal(size),
        fee=Decimal("0.90"), liquidity=Liquidity.MAKER, arrival_mid=Decimal("3000.005"),
        mode=TradingMode.PAPER, filled_at=AT + timedelta(seconds=3),
    )  # fmt: skip


async def test_an_order_is_recorded_once_and_follows_its_state(pg_url, pg_engine, closing):
    upgrade(pg_url)
    writer = Writer(pg_engine)
    closing.push_async_callback(writer.close)
    async with writer.batch() as batch:
        await record_order(batch, REQUEST, intent_id="entry:1", status=OrderStatus.PENDING,
                           mode=TradingMode.PAPER)  # fmt: skip
    async with writer.batch() as batch:
        await record_order(batch, REQUEST, intent_id="entry:1",
                           status=OrderStatus.PARTIALLY_FILLED, mode=TradingMode.PAPER,
                           filled_size=Decimal("0.2"), average_price=Decimal("2999.99"),
                           venue_order_id="v-1")  # fmt: skip
    async with pg_engine.connect() as connection:
        rows = (await connection.execute(select(Order))).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.status, row.filled_size, row.venue_order_id, row.order_type, row.post_only) == (
        "PARTIALLY_FILLED", Decimal("0.2"), "v-1", "LIMIT", True,
    )  # fmt: skip


async def test_a_replayed_fill_is_recorded_once_even_when_replays_race(
    pg_url, pg_engine, closing
):  # fmt: skip
    upgrade(pg_url)
    writer = Writer(pg_engine)
    closing.push_async_callback(writer.close)
    async with writer.batch() as batch:
        await record_order(batch, REQUEST, intent_id="entry:1", status=OrderStatus.OPEN,
                           mode=TradingMode.PAPER)  # fmt: skip

    async def record(fill: OrderFilled) -> bool:
        async with writer.batch() as batch:
            inserted = await record_fill(batch, fill, venue="paper", arrival_time=AT)
        return await inserted.first() is not None

    first = await asyncio.gather(*(record(_fill("t-1", "0.2")) for _ in range(5)))
    assert sorted(first) == [False, False, False, False, True]
    assert await record(_fill("t-2", "0.3")) is True
    assert await record(_fill("t-1", "0.2")) is False
    async with pg_engine.connect() as connection:
        count, size = (await connection.execute(select(func.count(), func.sum(Fill.size)))).one()
        row = (await connection.execute(select(Fill).where(Fill.trade_id == "t-1"))).one()
    assert (count, size) == (2, Decimal("0.5"))
    assert (row.arrival_mid, row.arrival_time, row.liquidity, row.venue) == (
        Decimal("3000.005"), AT, "MAKER", "paper",
    )  # fmt: skip
