"""Bus latency and throughput against the real Redis, next to a bare redis-py floor.

hop:   publish -> consumer reads -> decode -> dedupe check -> handler -> MULTI(ack) done,
       one message at a time, measured from before XADD to after the ack commits.
floor: a bare XADD then XREADGROUP of the same entry size with the same client library.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

from redis.asyncio import Redis

from shared.bus import BusKeys, ConsumerSettings, Delivery, Publisher, StreamConsumer, create_redis
from shared.clock import LiveClock
from shared.messages import Envelope, Payload, encode, new_envelope
from tests.support.samples import tick

CLOCK = LiveClock()
WARMUP = 200


class _SettledConsumer(StreamConsumer):
    """Signals after each entry is fully processed (acked), for timing only."""

    settled: asyncio.Event

    async def _process(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        await super()._process(*args, **kwargs)
        self.settled.set()


async def _group_exists(redis: Redis, stream: str) -> None:
    """Timing starts once the consumer has created its group."""
    for _ in range(500):
        if await redis.exists(stream) and await redis.xinfo_groups(stream):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"consumer group on {stream} never appeared")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _floor(redis: Redis, keys: BusKeys, payload: bytes, count: int) -> list[float]:
    stream = keys.stream("bench.floor")
    await redis.xgroup_create(stream, "g", id="$", mkstream=True)
    samples = []
    for i in range(count + WARMUP):
        started = time.perf_counter()
        await redis.xadd(stream, {"env": payload})
        await redis.xreadgroup("g", "c", {stream: ">"}, count=1)
        if i >= WARMUP:
            samples.append(time.perf_counter() - started)
    return samples


async def _hops(redis: Redis, keys: BusKeys, count: int) -> list[float]:
    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        return None

    settings = ConsumerSettings(stream="bench.hop", group="g", consumer="c", block_ms=1000)
    consumer = _SettledConsumer(redis, settings, handle, keys=keys)
    consumer.settled = asyncio.Event()
    publisher = Publisher(redis, keys=keys)
    task = asyncio.create_task(consumer.run())
    await _group_exists(redis, keys.stream("bench.hop"))
    samples = []
    for i in range(count + WARMUP):
        envelope = new_envelope(tick(), CLOCK)
        consumer.settled.clear()
        started = time.perf_counter()
        await publisher.publish(envelope, stream="bench.hop")
        await consumer.settled.wait()
        if i >= WARMUP:
            samples.append(time.perf_counter() - started)
    consumer.stop()
    await task
    return samples


async def _throughput(redis: Redis, keys: BusKeys, count: int) -> float:
    handled = 0
    done = asyncio.Event()

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            done.set()

    envelopes = [new_envelope(tick(), CLOCK) for _ in range(count)]
    settings = ConsumerSettings(stream="bench.tput", group="g", consumer="c", batch_size=64)
    consumer = StreamConsumer(redis, settings, handle, keys=keys)
    publisher = Publisher(redis, keys=keys, maxlen=count * 2)
    task = asyncio.create_task(consumer.run())
    await _group_exists(redis, keys.stream("bench.tput"))
    started = time.perf_counter()
    for envelope in envelopes:
        await publisher.publish(envelope, stream="bench.tput")
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    consumer.stop()
    await task
    return count / elapsed


async def run(redis_url: str, count: int = 3000, throughput_count: int = 20000) -> str:
    redis = create_redis(redis_url)
    keys = BusKeys(prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    payload = encode(new_envelope(tick(), CLOCK))
    try:
        floor = await _floor(redis, keys, payload, count)
        hops = await _hops(redis, keys, count)
        rate = await _throughput(redis, keys, throughput_count)
    finally:
        async for key in redis.scan_iter(match=f"{keys.prefix}*"):
            await redis.delete(key)
        await redis.aclose()
    hop_p50, floor_p50 = statistics.median(hops) * 1e6, statistics.median(floor) * 1e6
    return (
        f"BENCH bus hop_p50_us={hop_p50:.0f} hop_p99_us={_percentile(hops, 0.99) * 1e6:.0f} "
        f"floor_p50_us={floor_p50:.0f} msgs_per_s={rate:.0f} "
        f"hop_over_floor={hop_p50 / floor_p50:.2f} samples={count}"
    )
