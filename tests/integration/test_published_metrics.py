"""Streams risk and execution write themselves (one MULTI per step, not through the bus's
Publisher) count in ``bus_published_total`` like every other stream, and risk's trading
state reaches its gauges."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.execution.reports import RedisReports
from shared.clock import SimulatedClock
from shared.db import upgrade
from shared.messages import IntentFinished, IntentKind, OrderStatus, TradingMode
from shared.money import Side
from tests.support.polling import metric
from tests.support.risk import risk_service, seed_catalog, stream_payloads

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


async def test_execution_reports_count_as_published_on_their_stream(redis, bus_keys):
    clock = SimulatedClock(START)
    reports = RedisReports(redis, bus_keys, clock, maxlen=1000)
    before = metric("bus_published_total", stream="exec.reports")
    finished = [
        IntentFinished(
            intent_id=f"i-{n}",
            kind=IntentKind.ENTRY,
            product_id="BTC-USD",
            side=Side.BUY,
            status=OrderStatus.CANCELLED,
            filled_base=Decimal(0),
            filled_quote=Decimal(0),
            reason="test",
            mode=TradingMode.PAPER,
            finished_at=clock.now(),
        )  # fmt: skip
        for n in range(3)
    ]
    await reports.publish(1, finished)
    assert await redis.xlen(bus_keys.stream("exec.reports")) == 3
    assert metric("bus_published_total", stream="exec.reports") == before + 3


async def test_a_pause_counts_as_published_and_shows_in_the_trading_state(
    redis, redis_url, bus_keys, pg_url, pg_engine
):
    upgrade(pg_url)
    clock = SimulatedClock(START)
    await seed_catalog(redis, bus_keys, clock)
    before = metric("bus_published_total", stream="risk.control")
    async with risk_service(redis_url, bus_keys, pg_engine, clock) as risk:
        response = await risk.client.post("/v1/pause", json={"reason": "metrics"})
        assert response.status_code == 200 and response.json()["state"] == "PAUSED"
        assert metric("risk_trading_state", state="PAUSED") == 1
        assert metric("risk_trading_state", state="RUNNING") == 0
        assert metric("risk_entries_allowed") == 0
    written = await stream_payloads(redis, bus_keys, "risk.control")
    assert len(written) == 1
    assert metric("bus_published_total", stream="risk.control") == before + 1
