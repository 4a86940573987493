"""Whether entries may open, and the equity marks the loss limits are measured from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["EquityWatch", "TradingState"]


@dataclass(frozen=True)
class TradingState:
    """RUNNING, or PAUSED with who paused it, when and why; exits work in both."""

    entries_allowed: bool = True
    reason: str = ""
    actor: str = ""
    since: datetime | None = None
    flatten_id: str | None = None  # a flatten in progress holds the pause

    @property
    def name(self) -> str:
        if self.flatten_id is not None:
            return "FLATTENING"
        return "RUNNING" if self.entries_allowed else "PAUSED"

    def to_json(self) -> dict[str, Any]:
        return {
            "entries_allowed": self.entries_allowed, "reason": self.reason, "actor": self.actor,
            "since": self.since.isoformat() if self.since else None,
            "flatten_id": self.flatten_id,
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TradingState:
        since = raw.get("since")
        return cls(
            entries_allowed=bool(raw["entries_allowed"]), reason=str(raw.get("reason", "")),
            actor=str(raw.get("actor", "")),
            since=datetime.fromisoformat(since) if since else None,
            flatten_id=raw.get("flatten_id"),
        )  # fmt: skip


@dataclass
class EquityWatch:
    """The high-water mark (for drawdown) and today's opening equity (for the daily loss).

    The day is the UTC calendar day; its opening equity is the first reading after
    midnight. The high-water mark only rises, unless the operator resets it on resume.
    """

    peak: Decimal | None = None
    day: date | None = None
    day_start: Decimal | None = None

    def observe(self, equity: Decimal, now: datetime) -> bool:
        """Take a reading; True when a stored mark changed."""
        changed = False
        if self.day != now.date() or self.day_start is None:
            self.day, self.day_start, changed = now.date(), equity, True
        if self.peak is None or equity > self.peak:
            self.peak, changed = equity, True
        return changed

    def day_pnl(self, equity: Decimal) -> Decimal:
        return Decimal(0) if self.day_start is None else equity - self.day_start

    def day_loss_pct(self, equity: Decimal) -> Decimal:
        if not self.day_start or self.day_start <= 0:
            return Decimal(0)
        return max(Decimal(0), (self.day_start - equity) * 100 / self.day_start)

    def drawdown_pct(self, equity: Decimal) -> Decimal:
        if not self.peak or self.peak <= 0:
            return Decimal(0)
        return max(Decimal(0), (self.peak - equity) * 100 / self.peak)

    def to_json(self) -> dict[str, Any]:
        return {
            "peak": str(self.peak) if self.peak is not None else None,
            "day": self.day.isoformat() if self.day else None,
            "day_start": str(self.day_start) if self.day_start is not None else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EquityWatch:
        return cls(
            peak=Decimal(raw["peak"]) if raw.get("peak") is not None else None,
            day=date.fromisoformat(raw["day"]) if raw.get("day") else None,
            day_start=Decimal(raw["day_start"]) if raw.get("day_start") is not None else None,
        )
