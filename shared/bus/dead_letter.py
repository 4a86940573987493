"""Moving entries that cannot be handled to ``dlq.<stream>``, with the reason recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from shared.bus import metrics
from shared.bus.keys import BusKeys, text
from shared.logging import get_logger, redact_text

if TYPE_CHECKING:
    from shared.bus.consumer import ConsumerSettings

__all__ = ["REASONS", "DeadLetters"]

_log = get_logger("shared.bus")
REASONS = ("malformed", "handler_failed", "max_deliveries", "trimmed")


class DeadLetters:
    """Dead-lettering for one consumer: the entry, why, and how often it was tried."""

    def __init__(self, redis: Redis, keys: BusKeys, settings: ConsumerSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._stream_key = keys.stream(settings.stream)
        self._dead_letter_key = keys.dead_letter(settings.stream)
        self._errors_key = keys.errors(settings.stream, settings.group)
        self._labels = (settings.stream, settings.group)
        # Each reason's series from the start, at zero, so the first dead letter shows as
        # growth to ``increase()`` instead of a series that merely appears.
        for reason in REASONS:
            metrics.DEAD_LETTERED.labels(*self._labels, reason)

    async def move(
        self, entry_id: str, fields: dict[bytes, bytes], reason: str, error: str, attempt: int
    ) -> None:
        """Append the entry and its error to the dead-letter stream and ack it, atomically."""
        record: dict[Any, Any] = dict(fields)
        record.update(
            {
                "reason": reason,
                "error": redact_text(error)[:2000],
                "source_stream": self._settings.stream,
                "source_id": entry_id,
                "group": self._settings.group,
                "consumer": self._settings.consumer,
                "attempts": attempt,
            }
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self._dead_letter_key,
                record,
                maxlen=self._settings.dead_letter_maxlen,
                approximate=True,
            )
            pipe.xack(self._stream_key, self._settings.group, entry_id)
            pipe.hdel(self._errors_key, entry_id)
            await pipe.execute()
        metrics.DEAD_LETTERED.labels(*self._labels, reason).inc()
        _log.error(
            "entry dead-lettered",
            stream=self._settings.stream,
            group=self._settings.group,
            entry_id=entry_id,
            reason=reason,
            error=error,
        )

    async def give_up(self, entry_id: str, fields: dict[bytes, bytes], attempt: int) -> None:
        """Delivered more than ``max_deliveries`` times: dead-letter with the last error seen."""
        last_error = await self._redis.hget(self._errors_key, entry_id)
        error = text(last_error) if last_error else "consumer died while handling it"
        await self.move(entry_id, fields, "max_deliveries", error, attempt)

    async def report_trimmed(self, entry_ids: list[str]) -> None:
        """Pending entries the stream trimmed away before anyone handled them: data loss."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream_key, self._settings.group, *entry_ids)
            pipe.hdel(self._errors_key, *entry_ids)
            await pipe.execute()
        metrics.DEAD_LETTERED.labels(*self._labels, "trimmed").inc(len(entry_ids))
        _log.error(
            "pending entries were trimmed before being handled; raise the stream maxlen",
            stream=self._settings.stream,
            group=self._settings.group,
            entry_ids=entry_ids[:20],
            count=len(entry_ids),
        )
