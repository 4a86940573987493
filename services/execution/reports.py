"""Where execution's reports go, and what it records them in: the two ports of its shell.

:class:`ExecutionService` takes both as parameters. The service wires Postgres
(:class:`services.execution.store.ExecutionStore`) and :class:`RedisReports`; the backtest
wires in-memory twins, so the same intents are driven the same way in both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from redis.asyncio import Redis

from services.execution.store import Progress, StoredIntent
from shared.bus import BusKeys, Publisher
from shared.clock import Clock
from shared.messages import (
    IntentFinished,
    OrderFilled,
    OrderUpdated,
    Payload,
    PlaceOrder,
    new_envelope,
)

__all__ = ["IntentStore", "RedisReports", "ReportSink", "message_id"]


class IntentStore(Protocol):
    """What execution must remember of its intents (see ``ExecutionStore``)."""

    async def add_intent(
        self, command: PlaceOrder, origin_ts: int, now: datetime, first: Progress
    ) -> bool:
        """Record a new intent with its first step; False if it was already recorded."""
        ...

    async def save(
        self, intent: PlaceOrder, progress: Progress, issued_at: datetime
    ) -> list[OrderFilled]:
        """Record one step; the fills in it not recorded before."""
        ...

    async def mark_reported(self, intent_id: str) -> None: ...

    async def unreported(self, intent_ids: Collection[str] | None = None) -> list[StoredIntent]:
        """Intents not yet reported finished (of ``intent_ids`` only, if given)."""
        ...

    async def fills_of(self, intent_id: str) -> list[OrderFilled]: ...


class ReportSink(Protocol):
    async def publish(self, origin_ts: int, events: Sequence[Payload]) -> None:
        """Deliver ``events`` (fills, order updates, intent ends) in order, all or none."""
        ...


class RedisReports:
    """``exec.reports`` in one MULTI per step, under ids derived from what they report."""

    def __init__(self, redis: Redis, keys: BusKeys, clock: Clock, maxlen: int) -> None:
        self._redis = redis
        self._publisher = Publisher(redis, keys=keys, maxlen=maxlen)
        self._clock = clock

    async def publish(self, origin_ts: int, events: Sequence[Payload]) -> None:
        if not events:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            streams = [
                self._publisher.queue(pipe, new_envelope(
                    event, self._clock, origin_ts=origin_ts, message_id=message_id(event)
                ))
                for event in events
            ]  # fmt: skip
            await pipe.execute()
        Publisher.count(streams)


def message_id(event: Payload) -> str:
    """The same report gets the same id, however often a replay publishes it."""
    if isinstance(event, OrderFilled):
        return f"exec:fill:{event.trade_id}"
    if isinstance(event, IntentFinished):
        return f"exec:finished:{event.intent_id}"
    if isinstance(event, OrderUpdated):
        return f"exec:order:{event.client_order_id}:{event.status.value}:{event.filled_size}"
    raise TypeError(f"execution does not publish {type(event).__name__}")
