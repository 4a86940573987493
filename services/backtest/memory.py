"""Execution's two ports in memory, for the backtest: nothing survives the run, by design."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from datetime import datetime

from services.execution.store import Progress, StoredIntent
from shared.messages import OrderFilled, Payload, PlaceOrder

__all__ = ["MemoryReports", "MemoryStore"]


class MemoryStore:
    """Intent ids taken on and trade ids recorded: the dedupe Postgres gives the service."""

    def __init__(self) -> None:
        self._intents: set[str] = set()
        self._trades: set[str] = set()

    async def add_intent(
        self, command: PlaceOrder, origin_ts: int, now: datetime, first: Progress
    ) -> bool:
        del origin_ts, now
        if command.intent_id in self._intents:
            return False
        self._intents.add(command.intent_id)
        await self.save(command, first, command.issued_at)
        return True

    async def save(
        self, intent: PlaceOrder, progress: Progress, issued_at: datetime
    ) -> list[OrderFilled]:
        del intent, issued_at
        new = [fill for fill in progress.fills if fill.trade_id not in self._trades]
        self._trades.update(fill.trade_id for fill in new)
        return new

    async def mark_reported(self, intent_id: str) -> None:
        del intent_id

    async def unreported(self, intent_ids: Collection[str] | None = None) -> list[StoredIntent]:
        del intent_ids
        return []

    async def fills_of(self, intent_id: str) -> list[OrderFilled]:
        del intent_id
        return []


class MemoryReports:
    """``exec.reports`` as a queue the backtest hands on to risk."""

    def __init__(self) -> None:
        self.pending: deque[Payload] = deque()

    async def publish(self, origin_ts: int, events: Sequence[Payload]) -> None:
        del origin_ts
        self.pending.extend(events)
