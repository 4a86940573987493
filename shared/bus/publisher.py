"""Publishing envelopes to Redis Streams with bounded length."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

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

    async def publish(self, envelope: Envelope[Any], *, stream: str | None = None) -> str:
        """Append now; returns the entry id. ``stream`` defaults to the payload's home."""
        name = stream or envelope.data.STREAM
        entry_id = await self._redis.xadd(
            self._keys.stream(name),
            {ENVELOPE_FIELD: encode(envelope)},
            maxlen=self._maxlen,
            approximate=True,
        )
        PUBLISHED.labels(name).inc()
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
