"""``python -m services.execution`` as a process: PAPER fills an intent over real Redis and
Postgres; SIGTERM stops it cleanly; LIVE refuses to start without a key and never logs one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy.local.servers import free_port
from shared.bus import BusKeys, Publisher
from shared.clock import LiveClock, SimulatedClock
from shared.db import upgrade
from shared.messages import IntentFinished, LiquidityPreference, OrderStatus
from tests.e2e.process import ServiceProcess
from tests.support.execution import Market, fills_of, place_order
from tests.support.polling import eventually
from tests.support.risk import seed_catalog, stream_payloads
from tests.support.venue import CONFIG_DIR, CdpTestKey


@pytest.fixture
def execution_env(redis_url, pg_url, bus_keys) -> dict[str, str]:
    upgrade(pg_url)
    return {
        "REDIS_URL": redis_url, "DATABASE_URL": pg_url, "BUS_PREFIX": bus_keys.prefix,
        "CONFIG_DIR": str(CONFIG_DIR), "SHUTDOWN_GRACE_S": "5", "EXEC_PAPER_LATENCY_MS": "0",
    }  # fmt: skip


async def test_a_paper_intent_fills_and_sigterm_stops_the_process_cleanly(
    execution_env, processes, redis: Redis, bus_keys: BusKeys, pg_engine: AsyncEngine
):
    await seed_catalog(redis, bus_keys, SimulatedClock(datetime.now(UTC)))
    process = ServiceProcess("services.execution", execution_env).start()
    processes.append(process)
    await process.wait_ready()
    market = Market(Publisher(redis, keys=bus_keys), LiveClock())
    await market.book([("49990", "1")], [("50010", "1")])
    await market.tick("49990", "50010")

    async def filled():
        await market.publish(command)  # until the process has seen the book: then it fills
        payloads = await stream_payloads(redis, bus_keys, "exec.reports")
        return [p for p in payloads if isinstance(p, IntentFinished)]

    command = place_order("entry:e2e", market.clock, quote="100",
                          liquidity=LiquidityPreference.TAKER)  # fmt: skip
    [finished] = await eventually(filled, what="the intent to finish")
    assert finished.status is OrderStatus.FILLED
    [fill] = await fills_of(pg_engine, "entry:e2e")
    assert fill.price == 50010 and fill.liquidity == "TAKER"
    process.signal(signal.SIGTERM)
    assert process.wait_exit() == 0


def test_live_without_a_key_refuses_to_start(execution_env):
    env = {**os.environ, **execution_env, "TRADING_MODE": "LIVE"}
    refused = subprocess.run([sys.executable, "-m", "services.execution"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2
    assert "CB_API_KEY" in refused.stderr


async def test_live_with_a_key_starts_stops_cleanly_and_never_logs_the_key(
    execution_env, processes
):
    key = CdpTestKey.generate()
    env = {**execution_env, "TRADING_MODE": "LIVE", "CB_API_KEY": key.name,
           "CB_API_SECRET": key.private_pem, "LOG_LEVEL": "DEBUG",
           "COINBASE_REST_URL": f"http://127.0.0.1:{free_port()}"}  # fmt: skip
    process = ServiceProcess("services.execution", env).start()
    processes.append(process)
    await process.wait_http("/healthz")
    process.signal(signal.SIGTERM)
    assert process.wait_exit() == 0
    secret_lines = key.private_pem.splitlines()[1:-1]
    assert not any(line in process.log() for line in secret_lines)
