"""The Postgres schema against a real Postgres: migrations both ways, constraints, exact money."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from shared.db import METADATA, Fill, Order, downgrade, sqlalchemy_url, upgrade

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLES = {
    "orders", "fills", "risk_decisions", "control_actions", "slippage_calibrations",
    "processed_messages", "risk_intents", "flatten_jobs", "risk_state", "execution_intents",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_then_downgrade_then_upgrade_again(pg_url):
    assert _tables(pg_url) == set()
    upgrade(pg_url)
    assert _tables(pg_url) == TABLES
    downgrade(pg_url, "base")
    assert _tables(pg_url) == set()
    upgrade(pg_url)
    assert _tables(pg_url) == TABLES


def test_the_models_and_the_migrations_describe_the_same_schema(pg_url):
    upgrade(pg_url)
    engine = create_engine(sqlalchemy_url(pg_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, METADATA)
    engine.dispose()
    assert differences == [], "run: alembic revision --autogenerate -m '...'"


def _order(client_order_id: str) -> dict[str, object]:
    return {
        "client_order_id": client_order_id, "intent_id": "i-1", "product_id": "BTC-USD",
        "side": "BUY", "order_type": "LIMIT", "post_only": True,
        "base_size": Decimal("0.00100000"), "limit_price": Decimal("64000.01"),
        "status": "OPEN", "mode": "PAPER",
    }  # fmt: skip


def _fill(venue: str, trade_id: str, client_order_id: str = "c-1") -> dict[str, object]:
    return {
        "venue": venue, "trade_id": trade_id, "client_order_id": client_order_id,
        "product_id": "BTC-USD", "side": "BUY", "price": Decimal("64000.0100000001"),
        "size": Decimal("0.00100000"), "fee": Decimal("0.0384000060"), "liquidity": "MAKER",
        "arrival_mid": Decimal("64000.015"), "arrival_time": AT, "filled_at": AT,
        "mode": "PAPER",
    }  # fmt: skip


async def _race(pg_engine, statement, rows: list[dict[str, object]]) -> list[bool]:  # type: ignore[no-untyped-def]
    """Insert every row at once, each in its own connection; which ones committed."""
    start, connected = asyncio.Event(), asyncio.Event()
    ready: list[int] = []

    async def one(row: dict[str, object]) -> bool:
        async with pg_engine.connect() as connection:
            await connection.execute(text("select 1"))  # the connection is really open
            ready.append(1)
            if len(ready) == len(rows):
                connected.set()
            await start.wait()
            try:
                await connection.execute(statement, row)
                await connection.commit()
                return True
            except IntegrityError:
                await connection.rollback()
                return False

    tasks = [asyncio.create_task(one(row)) for row in rows]
    await asyncio.wait_for(connected.wait(), 30)  # every task holds a connection
    start.set()
    return list(await asyncio.gather(*tasks))


async def test_client_order_ids_stay_unique_under_concurrent_inserts(pg_url, pg_engine):
    await asyncio.to_thread(upgrade, pg_url)
    outcomes = await _race(pg_engine, insert(Order), [_order("c-1") for _ in range(12)])
    assert outcomes.count(True) == 1
    async with pg_engine.connect() as connection:
        count = (await connection.execute(text("select count(*) from orders"))).scalar()
    assert count == 1


async def test_a_venue_trade_id_is_stored_once_per_venue(pg_url, pg_engine):
    await asyncio.to_thread(upgrade, pg_url)
    async with pg_engine.begin() as connection:
        await connection.execute(insert(Order), _order("c-1"))
    outcomes = await _race(pg_engine, insert(Fill), [_fill("coinbase", "t-1") for _ in range(12)])
    assert outcomes.count(True) == 1
    async with pg_engine.begin() as connection:
        await connection.execute(insert(Fill), _fill("paper", "t-1"))  # another venue: fine
        stored = (await connection.execute(select(Fill.venue, Fill.price, Fill.fee))).all()
    assert sorted(row.venue for row in stored) == ["coinbase", "paper"]
    assert {row.price for row in stored} == {Decimal("64000.0100000001")}  # exact, not rounded
    assert {str(row.fee) for row in stored} == {"0.0384000060"}


@pytest.mark.parametrize(
    ("table", "row", "constraint"),
    [
        (Fill, {"liquidity": "BOTH"}, "ck_fills_liquidity"),
        (Fill, {"mode": "DEMO"}, "ck_fills_mode"),
        (Fill, {"size": Decimal("0")}, "ck_fills_positive_amounts"),
        (Fill, {"client_order_id": "unknown"}, "fk_fills_client_order_id_orders"),
        (Order, {"quote_size": Decimal("10")}, "ck_orders_one_size"),
        (Order, {"status": "LOST"}, "ck_orders_status"),
    ],
)
async def test_the_schema_refuses_impossible_rows(pg_url, pg_engine, table, row, constraint):
    await asyncio.to_thread(upgrade, pg_url)
    async with pg_engine.begin() as connection:
        await connection.execute(insert(Order), _order("c-1"))
    base = _fill("coinbase", "t-9") if table is Fill else _order("c-2")
    with pytest.raises(IntegrityError, match=constraint):
        async with pg_engine.begin() as connection:
            await connection.execute(insert(table), {**base, **row})
