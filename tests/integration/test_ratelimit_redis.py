"""The shared limiter against a real Redis, from several processes at once."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

from shared.bus import create_redis
from shared.config.models import ChannelBudget, RateLimitsConfig
from shared.ratelimit import RedisLimiter
from tests.support.polling import eventually

RATE, BURST = 20, 5
CONFIG = RateLimitsConfig(
    public=ChannelBudget(rate_per_s=Decimal(RATE), burst=BURST),
    private=ChannelBudget(rate_per_s=Decimal(15), burst=10),
    websocket=ChannelBudget(rate_per_s=Decimal(1), burst=3),  # slow: a token a second
)


async def _caller(redis_url: str, prefix: str, tasks: int, each: int) -> list[tuple[bool, float]]:
    redis = create_redis(redis_url)
    limiter = RedisLimiter(redis, CONFIG, prefix=prefix)

    async def one() -> list[tuple[bool, float]]:
        results = []
        for _ in range(each):
            decision = await limiter.reserve("public", 1, max_wait_s=60)
            results.append((decision.granted, decision.send_at_s or 0.0))
            await asyncio.sleep(decision.wait_s)  # a caller waits before it sends
        return results

    try:
        batches = await asyncio.gather(*(one() for _ in range(tasks)))
    finally:
        await redis.aclose()
    return [result for batch in batches for result in batch]


def _process(redis_url: str, prefix: str) -> list[tuple[bool, float]]:
    return asyncio.run(_caller(redis_url, prefix, tasks=8, each=2))


def test_several_processes_never_exceed_rate_plus_burst_in_any_second(redis_url, redis, bus_keys):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        futures = [pool.submit(_process, redis_url, bus_keys.prefix) for _ in range(4)]
        results = [result for future in futures for result in future.result(timeout=60)]
    assert len(results) == 64 and all(granted for granted, _ in results)  # everyone served
    sends = sorted(send_at for _, send_at in results)
    for index, start in enumerate(sends):
        in_window = sum(1 for at in sends[index:] if at < start + 1.0)
        # the exact bound of the algorithm over a half-open second
        assert in_window <= RATE + BURST - 1, f"{in_window} tokens in the second from {start}"
    # paced, not merely bounded: 64 tokens need at least (64 - burst) / rate seconds
    assert sends[-1] - sends[0] >= (64 - BURST) / RATE - 0.01


async def test_a_refused_reservation_consumes_nothing(redis, bus_keys):
    limiter = RedisLimiter(redis, CONFIG, prefix=bus_keys.prefix)  # websocket: 1/s, burst 3
    for _ in range(3):
        assert (await limiter.reserve("websocket", 1, max_wait_s=0)).granted
    refused = await limiter.reserve("websocket", 1, max_wait_s=0)
    assert not refused.granted and 0.9 < refused.wait_s <= 1.0
    for _ in range(20):  # refusals in a row do not push the next grant further out
        assert not (await limiter.reserve("websocket", 1, max_wait_s=0)).granted
    waited = await limiter.reserve("websocket", 1, max_wait_s=2)
    assert waited.granted and waited.wait_s <= refused.wait_s


async def test_a_reported_429_holds_the_channel_until_its_reset(redis, bus_keys):
    limiter = RedisLimiter(redis, CONFIG, prefix=bus_keys.prefix)
    await limiter.hold("private", retry_after_s=2.0)
    decision = await limiter.reserve("private", 1, max_wait_s=10)
    # empty until the reset, then one interval (1/15 s) for the token, less time elapsed
    assert decision.granted and 1.9 <= decision.wait_s <= 2.1
    other = await limiter.reserve("public", 1, max_wait_s=0)
    assert other.granted and other.wait_s == 0  # other channels are not held


async def test_usage_counts_tokens_by_the_second_they_are_used(redis, bus_keys):
    limiter = RedisLimiter(redis, CONFIG, prefix=bus_keys.prefix)
    for _ in range(BURST):
        await limiter.reserve("public", 1, max_wait_s=0)
    usage = await eventually(
        lambda: _usage_with(limiter, BURST), within=3, what="the second to complete"
    )
    assert usage.rate_per_s == RATE and usage.burst == BURST
    assert usage.utilization_60s == BURST / (RATE * 60)


async def _usage_with(limiter: RedisLimiter, tokens: int):  # type: ignore[no-untyped-def]
    usage = await limiter.usage("public")
    return usage if usage.used_last_60s == tokens else None
