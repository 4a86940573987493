"""market-data as a process against a venue whose market keeps running late: candles stay right.

exchange-sim runs in this test's event loop, which the test blocks now and then, as a
busy machine does: each time, the venue's next step brings many seconds of market at
once, its book updates and one product's trades on the wire before the other's. A
message stamped past a bucket may then come before prints of that bucket; market-data,
a process of its own, reads on meanwhile. Every candle it publishes must still be the
venue's, and most must still be built from trades.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.bus import BusKeys
from shared.clock import ScaledClock
from shared.messages import CandleClosed
from tests.e2e.process import ServiceProcess
from tests.support.market import assert_candles_are_the_venues
from tests.support.venue import CONFIG_DIR, rate_limiter_service, running_sim

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SPEED = 120.0
STALL_S = 0.4  # 48 s of market at once, far past the 10 s close delay
LIVE_CANDLES = 40


def _built_from_trades(metrics: str) -> float:
    pattern = r'md_candles_published_total\{granularity_s="60",source="trades"\} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


async def test_a_venue_running_late_never_makes_a_wrong_candle(
    redis_url: str, redis: Any, bus_keys: BusKeys, processes: list
) -> None:
    origin = datetime.now(UTC).replace(microsecond=0)
    async with (
        running_sim(clock=ScaledClock(origin, SPEED), sim_history_minutes=60,
                    sim_step_ms=20) as sim,
        rate_limiter_service(redis_url, bus_keys.prefix) as limiter_url,
    ):  # fmt: skip
        env = {
            "REDIS_URL": redis_url, "BUS_PREFIX": bus_keys.prefix, "CONFIG_DIR": str(CONFIG_DIR),
            "CLOCK_SPEED": str(SPEED), "CLOCK_ORIGIN": origin.isoformat(), "LOG_LEVEL": "INFO",
            "MD_SOURCE": "sim", "EXCHANGE_SIM_URL": sim.base_url, "RATE_LIMITER_URL": limiter_url,
            "MD_GRANULARITIES": "60,300", "MD_CLOSE_DELAY_S": "10", "MD_CANDLE_POLL_MS": "5",
            "MD_BACKFILL_CANDLES": "5", "MD_STALE_AFTER_S": "5",
        }  # fmt: skip
        market_data = ServiceProcess("services.market_data", env).start()
        processes.append(market_data)
        await market_data.wait_ready(within=60)
        stream = bus_keys.stream(CandleClosed.STREAM)
        target = await redis.xlen(stream) + LIVE_CANDLES
        deadline = time.monotonic() + 90
        while await redis.xlen(stream) < target:
            assert time.monotonic() < deadline, "too few candles in time"
            await asyncio.sleep(0.2)
            time.sleep(STALL_S)  # noqa: ASYNC251 - the loop and the venue's driver stall
        metrics = (await market_data.get("/metrics")).text
        market_data.signal(signal.SIGTERM)
        assert market_data.wait_exit() == 0
        await assert_candles_are_the_venues(sim, redis, bus_keys)
    assert _built_from_trades(metrics) >= LIVE_CANDLES / 2
