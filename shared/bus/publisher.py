"""Publishing envelopes to Redis Streams with bounded length."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared.bus.keys import BusKeys
from shared.bus.metrics import PUBLISHED
from shared.messages import Envelope, encode

__all__ = ["ENVELOPE_FIELD", "Publisher"]

ENVELOPE_FIELD = "env"
"""The one field of a stream entry; it holds the JSON envelope."""


class Publisher:
    """Appends envelopes to streams, trimming each to about ``maxlen`` entries."""

    def __init__(self, redis: Redis, *, keys: BusKeys | None = None, maxlen: int = 100_000) -> None:
        if maxlen <= 0:
            raise ValueError("maxlen must be positive")
        self._redis = redis
        self._keys = keys or BusKeys()
        self._maxlen = maxlen

    async def publish(
        self, envelope: Envelope[Any], *, stream: str | None = None,
        latest_in: tuple[str, str] | None = None,
    ) -> str:  # fmt: skip
        """Append now; returns the entry id. ``stream`` defaults to the payload's home.

        ``latest_in``: a hash key and field that also get the encoded envelope, in the same
        round trip (not atomically): a cache of the latest entry of its kind, for readers
        that want it now and then rather than every entry."""
        name = stream or envelope.data.STREAM
        raw = encode(envelope)
        key = self._keys.stream(name)
        if latest_in is None:
            entry_id = await self._redis.xadd(
                key, {ENVELOPE_FIELD: raw}, maxlen=self._maxlen, approximate=True
            )
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {ENVELOPE_FIELD: raw}, maxlen=self._maxlen, approximate=True)
                pipe.hset(latest_in[0], latest_in[1], raw)
                entry_id, _ = await pipe.execute()
        self.count([name])
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def queue(self, pipe: Pipeline, envelope: Envelope[Any], *, stream: str | None = None) -> str:
        """Add the append of ``envelope`` to the caller's pipeline (or MULTI), to go with
        its other commands; returns the stream's name, for :meth:`count` once it ran."""
        name = stream or envelope.data.STREAM
        pipe.xadd(self._keys.stream(name), {ENVELOPE_FIELD: encode(envelope)},
                  maxlen=self._maxlen, approximate=True)  # fmt: skip
        return name

    @staticmethod
    def count(streams: Iterable[str]) -> None:
        """Count appends that landed, one per stream name given."""
        for name in streams:
            PUBLISHED.labels(name).inc()
