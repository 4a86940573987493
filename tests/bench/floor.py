"""The floor under the pipeline's figure: bare Redis stream hops, a process for each.

An entry is added to the first stream at a fixed rate; a relay process reads each
stream as a consumer group member and adds what it reads to the next; the sending
process reads the last. Each entry carries its send time (the monotonic clock, which
all processes share), so the figure is from before the first XADD to the last read.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import uvloop
from redis.asyncio import Redis

from shared.bus import ENVELOPE_FIELD, BusKeys, create_redis
from shared.clock import LiveClock
from shared.messages import encode, new_envelope
from tests.support.polling import eventually
from tests.support.samples import tick

__all__ = ["floor_hops"]


def _relay_process(redis_url: str, source: str, target: str, stop_after_s: float) -> None:
    uvloop.run(_relay(redis_url, source, target, stop_after_s))


async def _relay(redis_url: str, source: str, target: str, stop_after_s: float) -> None:
    """Read ``source`` as a consumer of group "floor", add each entry to ``target``,
    until the entry marked "end" has passed (or ``stop_after_s``, should it never come)."""
    redis = create_redis(redis_url)
    await redis.xgroup_createconsumer(source, "floor", "c")  # what the sender waits for
    ended, deadline = False, time.monotonic() + stop_after_s
    while not ended and time.monotonic() < deadline:
        response: Any = await redis.xreadgroup("floor", "c", {source: ">"}, count=64, block=1000)
        for _stream, entries in response or ():
            for _entry_id, fields in entries:
                await redis.xadd(target, fields)
                ended = ended or b"end" in fields
    await redis.aclose()


def _endpoints_process(
    redis_url: str, streams: list[str], rate: int, seconds: float
) -> list[float]:
    return uvloop.run(_endpoints(redis_url, streams, rate, seconds))


async def _endpoints(redis_url: str, streams: list[str], rate: int, seconds: float) -> list[float]:
    """Once every relay reads, add to the first stream ``rate`` entries a second (half a
    second of warm-up, then ``seconds``); the seconds each measured entry took to come
    out of the last."""
    sender, receiver = create_redis(redis_url), create_redis(redis_url)
    for stream in streams[:-1]:

        async def reading(stream: str = stream) -> bool:
            return bool(await sender.xinfo_consumers(stream, "floor"))

        await eventually(reading, within=60, what=f"a reader of {stream}")
    payload = encode(new_envelope(tick(), LiveClock()))  # the size of a real tick
    samples: list[float] = []

    async def receive() -> None:
        while True:
            reply: Any = await receiver.xreadgroup("floor", "c", {streams[-1]: ">"}, block=1000)
            for _stream, entries in reply or ():
                for _entry_id, fields in entries:
                    if b"end" in fields:
                        return
                    samples.append((time.monotonic_ns() - int(fields[b"t"])) / 1e9)

    reader = asyncio.create_task(receive())
    warmup = rate // 2
    started = time.monotonic()
    for index in range(warmup + int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        await sender.xadd(streams[0], {ENVELOPE_FIELD: payload, "t": time.monotonic_ns()})
    await sender.xadd(streams[0], {"end": 1})
    await reader
    await sender.aclose()
    await receiver.aclose()
    return samples[warmup:]


async def floor_hops(
    redis: Redis, keys: BusKeys, redis_url: str, *, hops: int, rate: int, seconds: float
) -> list[float]:
    """``hops`` bare hops at ``rate`` entries a second for ``seconds``: seconds per entry."""
    streams = [keys.stream(f"bench.floor.{hop}") for hop in range(hops)]
    for stream in streams:
        await redis.xgroup_create(stream, "floor", id="$", mkstream=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=hops, mp_context=context) as pool:
        relays = [
            pool.submit(_relay_process, redis_url, source, target, seconds + 60)
            for source, target in zip(streams, streams[1:], strict=False)
        ]
        measured = pool.submit(_endpoints_process, redis_url, streams, rate, seconds)
        samples = await asyncio.wrap_future(measured)
        for relay in relays:
            relay.result(timeout=30)
    return samples
