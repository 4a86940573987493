"""A flatten job: close every position in scope and keep at it until each one is flat.

A product is done when its long position is worth less than the dust threshold and no
intent on it is still open (a cancelled entry can still deliver a late partial fill). A
product that is not done and has nothing in flight gets another exit, each attempt
spaced further apart, until it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = ["FlattenJob", "ProductProgress", "ProgressStatus"]

FIRST_RETRY = timedelta(seconds=2)
LONGEST_RETRY = timedelta(seconds=60)


class ProgressStatus(StrEnum):
    WAITING = "WAITING"  # orders on it are being cancelled or finishing
    EXITING = "EXITING"  # an exit order is working
    FLAT = "FLAT"


@dataclass
class ProductProgress:
    status: ProgressStatus = ProgressStatus.WAITING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_result: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value, "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "last_result": self.last_result,
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProductProgress:
        at = raw.get("next_attempt_at")
        return cls(
            ProgressStatus(raw["status"]), int(raw.get("attempts", 0)),
            datetime.fromisoformat(at) if at else None, str(raw.get("last_result", "")),
        )  # fmt: skip


@dataclass
class FlattenJob:
    flatten_id: str
    actor: str
    reason: str
    requested_at: datetime
    products: dict[str, ProductProgress] = field(default_factory=dict)
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def intent_id(self, product_id: str) -> str:
        return f"flatten:{self.flatten_id}:{product_id}:{self.products[product_id].attempts}"

    def exit_sent(self, product_id: str, now: datetime) -> None:
        progress = self.products[product_id]
        progress.attempts += 1
        progress.status = ProgressStatus.EXITING
        delay = min(LONGEST_RETRY, FIRST_RETRY * 2 ** (progress.attempts - 1))
        progress.next_attempt_at = now + delay

    def settle(self, product_id: str, *, flat: bool, busy: bool, exiting: bool) -> bool:
        """Record where a product stands; True when its status changed.

        ``busy``: some intent on it is still open; ``exiting``: one of them is our exit.
        """
        progress = self.products[product_id]
        before = progress.status
        if flat and not busy:
            progress.status = ProgressStatus.FLAT
        else:
            progress.status = ProgressStatus.EXITING if exiting else ProgressStatus.WAITING
        return before is not progress.status

    def due(self, product_id: str, now: datetime) -> bool:
        """Whether this product may get another exit now (its last one has had its time)."""
        progress = self.products[product_id]
        if progress.status is ProgressStatus.FLAT:
            return False
        return progress.next_attempt_at is None or now >= progress.next_attempt_at

    def finish_if_flat(self, now: datetime) -> bool:
        if self.finished_at is None and all(
            p.status is ProgressStatus.FLAT for p in self.products.values()
        ):
            self.finished_at = now
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "flatten_id": self.flatten_id, "actor": self.actor, "reason": self.reason,
            "requested_at": self.requested_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "status": "DONE" if self.done else "RUNNING",
            "products": {p: progress.to_json() for p, progress in self.products.items()},
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FlattenJob:
        finished = raw.get("finished_at")
        return cls(
            flatten_id=raw["flatten_id"], actor=raw["actor"], reason=raw["reason"],
            requested_at=datetime.fromisoformat(raw["requested_at"]),
            products={p: ProductProgress.from_json(v) for p, v in raw["products"].items()},
            finished_at=datetime.fromisoformat(finished) if finished else None,
        )  # fmt: skip
