"""Building blocks for the bus tests: fast settings, a running consumer, stream reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from shared.bus import BusKeys, ConsumerSettings, Handler, StreamConsumer


def fast_settings(stream: str, consumer: str = "c1", **overrides: object) -> ConsumerSettings:
    """Settings with short idle and claim times so redelivery happens within a test."""
    values: dict[str, object] = {
        "stream": stream,
        "group": "g",
        "consumer": consumer,
        "block_ms": 50,
        "claim_min_idle_ms": 200,
        "claim_interval_s": 0.05,
        "max_deliveries": 3,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.5,
    }
    values.update(overrides)
    return ConsumerSettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def consuming(
    redis: Redis, keys: BusKeys, settings: ConsumerSettings, handler: Handler
) -> AsyncIterator[tuple[StreamConsumer, asyncio.Task[None]]]:
    consumer = StreamConsumer(redis, settings, handler, keys=keys)
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer, task
    finally:
        consumer.stop()
        if not task.done():
            await asyncio.wait_for(task, timeout=5)


async def pending_count(redis: Redis, keys: BusKeys, stream: str, group: str = "g") -> int:
    summary = await redis.xpending(keys.stream(stream), group)
    return int(summary["pending"])


async def dead_letters(redis: Redis, keys: BusKeys, stream: str) -> list[dict[str, str]]:
    entries = await redis.xrange(keys.dead_letter(stream))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in entries]
