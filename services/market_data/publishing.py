"""Writing market data to the bus; candles exactly once per bucket.

A candle's XADD and the record of its bucket as published happen in one MULTI/EXEC, so
a crash can never publish a bucket twice or skip one; its envelope id is derived from
the bucket (``candle:<product>:<granularity>:<start>``) so consumers can dedupe anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from services.market_data.candles import Route
from shared.bus import BusKeys, Publisher
from shared.bus.keys import text
from shared.candle_files import Candle
from shared.clock import Clock
from shared.messages import CandleClosed, new_envelope

__all__ = ["CandleLedger", "candle_message_id"]


def candle_message_id(route: Route, start: int) -> str:
    return f"candle:{route[0]}:{route[1]}:{start}"


class CandleLedger:
    """Publishes candles and remembers, per route, the last bucket published."""

    def __init__(self, redis: Redis, keys: BusKeys, clock: Clock, *, maxlen: int) -> None:
        self._redis = redis
        self._clock = clock
        self._publisher = Publisher(redis, keys=keys, maxlen=maxlen)
        self.key = f"{keys.prefix}md:candles:published"

    async def last_published(self) -> dict[Route, int]:
        raw = await self._redis.hgetall(self.key)
        published = {}
        for field, value in raw.items():
            product_id, _, granularity = text(field).rpartition(":")
            published[(product_id, int(granularity))] = int(value)
        return published

    async def publish(self, route: Route, candle: Candle) -> None:
        payload = CandleClosed(
            product_id=route[0],
            granularity_s=route[1],
            start=datetime.fromtimestamp(candle.start, UTC),
            open=candle.open,
            high=candle.high,
            low=candle.low,
            close=candle.close,
            volume=candle.volume,
        )
        envelope = new_envelope(
            payload, self._clock, message_id=candle_message_id(route, candle.start)
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            stream = self._publisher.queue(pipe, envelope)
            pipe.hset(self.key, f"{route[0]}:{route[1]}", candle.start)
            await pipe.execute()
        Publisher.count([stream])
