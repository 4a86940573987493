"""What risk has approved and not yet seen finished: entry windows and open intents.

The windows are exact: an entry approved at ``t`` counts in the hour window until, and
not including, ``t + 3600 s``; each window is the half-open interval ``(now - length, now]``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from shared.messages import IntentKind
from shared.money import Side

__all__ = ["EntryRecord", "EntryWindows", "OpenIntent", "OpenIntents"]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ZERO = Decimal(0)


@dataclass(frozen=True)
class EntryRecord:
    at: datetime
    product_id: str
    quote_size: Decimal


@dataclass
class EntryWindows:
    """Approved entries within the longest window any limit looks at."""

    retention: timedelta = DAY
    _entries: deque[EntryRecord] = field(default_factory=deque)

    def record(self, entry: EntryRecord) -> None:
        if self._entries and entry.at < self._entries[-1].at:
            raise ValueError("entries must be recorded in time order")
        self._entries.append(entry)

    def load(self, entries: Iterable[EntryRecord]) -> None:
        for entry in sorted(entries, key=lambda e: e.at):
            self.record(entry)

    def prune(self, now: datetime) -> None:
        horizon = now - max(self.retention, DAY)
        while self._entries and self._entries[0].at <= horizon:
            self._entries.popleft()

    def _within(self, now: datetime, length: timedelta) -> list[EntryRecord]:
        start = now - length
        return [entry for entry in self._entries if start < entry.at <= now]

    def count(self, now: datetime, length: timedelta) -> int:
        return len(self._within(now, length))

    def quote_total(self, now: datetime, length: timedelta) -> Decimal:
        return sum((entry.quote_size for entry in self._within(now, length)), ZERO)

    def last_entry(self, product_id: str) -> datetime | None:
        for entry in reversed(self._entries):
            if entry.product_id == product_id:
                return entry.at
        return None


@dataclass
class OpenIntent:
    """An order intent risk issued that execution has not reported finished."""

    intent_id: str
    kind: IntentKind
    product_id: str
    side: Side
    quote_size: Decimal  # entries: the approved notional; exits: zero
    issued_at: datetime
    flatten_id: str | None = None
    filled_quote: Decimal = ZERO

    @property
    def reserved_quote(self) -> Decimal:
        """Notional an entry may still add to its product: approved minus filled."""
        if self.kind is not IntentKind.ENTRY:
            return ZERO
        return max(ZERO, self.quote_size - self.filled_quote)


@dataclass
class OpenIntents:
    by_id: dict[str, OpenIntent] = field(default_factory=dict)

    def add(self, intent: OpenIntent) -> None:
        self.by_id.setdefault(intent.intent_id, intent)

    def filled(self, intent_id: str, notional: Decimal) -> None:
        intent = self.by_id.get(intent_id)
        if intent is not None:
            intent.filled_quote += notional

    def finish(self, intent_id: str) -> OpenIntent | None:
        return self.by_id.pop(intent_id, None)

    def for_product(self, product_id: str) -> list[OpenIntent]:
        return [i for i in self.by_id.values() if i.product_id == product_id]

    def reserved(self, product_id: str) -> Decimal:
        return sum((i.reserved_quote for i in self.for_product(product_id)), ZERO)

    def exit_in_flight(self, product_id: str) -> bool:
        return any(i.kind is not IntentKind.ENTRY for i in self.for_product(product_id))

    def entry_products(self) -> set[str]:
        return {i.product_id for i in self.by_id.values() if i.kind is IntentKind.ENTRY}
