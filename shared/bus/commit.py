"""The atomic end of handling one entry: publish its outputs, mark it handled, ack it.

One Lua script does it in a single round trip, so a handler's Redis effects and the ack
either both happen or neither does, and a second commit of the same envelope (a slow
consumer overtaken by a claim, or a duplicate publish) writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from shared.bus.keys import BusKeys
from shared.bus.metrics import PUBLISHED
from shared.bus.publisher import ENVELOPE_FIELD
from shared.messages import Envelope, encode

__all__ = ["Committer", "Delivery"]

# KEYS: 1 handled marker, 2 source stream, 3 errors hash, 4.. output streams
# ARGV: 1 group, 2 entry id, 3 marker ttl (0: no dedupe), 4 output maxlen, 5 field, 6.. payloads
_COMMIT = """
local ttl = tonumber(ARGV[3])
if ttl > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  return 0
end
for i = 4, #KEYS do
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[4], '*', ARGV[5], ARGV[i + 2])
end
if ttl > 0 then
  redis.call('SET', KEYS[1], '1', 'EX', ttl)
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""


@dataclass
class Delivery:
    """One delivery of a stream entry to a handler."""

    entry_id: str
    stream: str
    attempt: int
    outbox: list[tuple[str, bytes]] = field(default_factory=list)

    def publish(self, envelope: Envelope[Any], *, stream: str | None = None) -> None:
        """Publish ``envelope`` atomically with this entry's ack.

        Exactly once while the consumer deduplicates (``handled_ttl_s`` set); without
        markers a redelivered entry publishes again.
        """
        self.outbox.append((stream or envelope.data.STREAM, encode(envelope)))


class Committer:
    """Runs the commit script for one consumer group."""

    def __init__(
        self, redis: Redis, keys: BusKeys, stream: str, group: str, *, outbox_maxlen: int
    ) -> None:
        self._script = redis.register_script(_COMMIT)
        self._keys = keys
        self._stream = stream
        self._group = group
        self._stream_key = keys.stream(stream)
        self._errors_key = keys.errors(stream, group)
        self._maxlen = outbox_maxlen

    async def commit(self, message_id: str, delivery: Delivery, handled_ttl_s: int | None) -> bool:
        """Apply the outbox, mark and ack; False if the group had already handled it."""
        marker = self._keys.handled(self._stream, self._group, message_id)
        keys = [marker, self._stream_key, self._errors_key]
        keys += [self._keys.stream(name) for name, _ in delivery.outbox]
        args: list[Any] = [self._group, delivery.entry_id, handled_ttl_s or 0, self._maxlen]
        args += [ENVELOPE_FIELD, *(payload for _, payload in delivery.outbox)]
        applied = bool(await self._script(keys=keys, args=args))
        if applied:
            for name, _ in delivery.outbox:
                PUBLISHED.labels(name).inc()
        return applied
