"""A service built on the shared library, run as a process: health, metrics, SIGTERM, kill -9."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func, select, text

from shared.bus import Publisher
from shared.clock import LiveClock
from shared.messages import new_envelope
from tests.e2e.process import ServiceProcess
from tests.e2e.recorder_service import recorded
from tests.support.polling import eventually
from tests.support.samples import tick

CLOCK = LiveClock()
SECRET = "probe-secret-7f3a9c1e"


@pytest.fixture
def service_env(redis_url, database_url, pg_schema, bus_keys) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"{database_url}?options=-csearch_path%3D{pg_schema}",
        "BUS_PREFIX": bus_keys.prefix,
        "PROBE_SECRET": SECRET,
        "HOLD_SECONDS": "1.5",
        "SHUTDOWN_GRACE_S": "10",
    }


def _start(processes: list[ServiceProcess], env: dict[str, str]) -> ServiceProcess:
    process = ServiceProcess("tests.e2e.recorder_service", env).start()
    processes.append(process)
    return process


async def _rows(pg_engine, message_id: str | None = None) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(recorded)
    if message_id:
        query = query.where(recorded.c.message_id == message_id)
    async with pg_engine.connect() as connection:
        exists = await connection.execute(text("select to_regclass('recorded_ticks')"))
        if exists.scalar() is None:
            return 0
        return int((await connection.execute(query)).scalar() or 0)


async def _pending(redis, bus_keys) -> int:  # type: ignore[no-untyped-def]
    return int((await redis.xpending(bus_keys.stream("md.ticks"), "recorder"))["pending"])


async def test_a_service_serves_ops_endpoints_handles_its_stream_and_stops_cleanly(
    redis, bus_keys, pg_engine, service_env, processes
):
    service = _start(processes, service_env)
    await service.wait_ready()
    assert (await service.get("/healthz")).json() == {"status": "ok", "service": "recorder"}
    checks = (await service.get("/readyz")).json()["checks"]
    assert checks == {"redis": "ok", "postgres": "ok", "worker:StreamConsumer-0": "ok"}

    publisher = Publisher(redis, keys=bus_keys)
    for i in range(30):
        await publisher.publish(new_envelope(tick(bid=f"{100 + i}", ask=f"{101 + i}"), CLOCK))
    await eventually(lambda: _is(_rows(pg_engine), 30), what="30 rows in Postgres")

    async def thirty_handled() -> bool:
        metrics = (await service.get("/metrics")).text
        return 'bus_handled_total{group="recorder",stream="md.ticks"} 30.0' in metrics

    await eventually(thirty_handled, what="30 handled in /metrics")

    held = new_envelope(tick(product_id="HOLD-USD"), CLOCK)
    await publisher.publish(held)
    await eventually(lambda: "holding message" in service.log(), what="the held message")
    service.signal(signal.SIGTERM)
    assert service.wait_exit() == 0
    events = [line["event"] for line in service.json_lines()]
    assert events.index("released message") < events.index("service stopped")
    assert await _rows(pg_engine, held.id) == 1
    assert await _pending(redis, bus_keys) == 0  # finished and acked before exiting
    assert SECRET not in service.log()
    assert all(line["service"] == "recorder" for line in service.json_lines())


async def test_kill_9_between_commit_and_ack_then_restart_records_each_message_once(
    redis, bus_keys, pg_engine, service_env, processes
):
    env = {**service_env, "HOLD_SECONDS": "600"}
    first = _start(processes, env)
    await first.wait_ready()
    publisher = Publisher(redis, keys=bus_keys)
    held = new_envelope(tick(product_id="HOLD-USD"), CLOCK)
    await publisher.publish(held)
    await eventually(lambda: "holding message" in first.log(), what="the held message")
    first.signal(signal.SIGKILL)
    first.wait_exit()
    assert await _pending(redis, bus_keys) == 1  # committed in Postgres, never acked

    second = _start(processes, {**service_env, "HOLD_PRODUCT": "NONE"})
    await second.wait_ready()
    later = [new_envelope(tick(), CLOCK) for _ in range(5)]
    for envelope in later:
        await publisher.publish(envelope)
    await eventually(lambda: _is(_pending(redis, bus_keys), 0), what="the redelivery acked")
    await eventually(lambda: _is(_rows(pg_engine), 6), what="6 rows")
    assert await _rows(pg_engine, held.id) == 1


async def _is(coroutine, expected) -> bool:  # type: ignore[no-untyped-def]
    return await coroutine == expected
