"""Postgres: the engine, the schema (models and Alembic migrations), idempotent handling.

``upgrade`` and ``downgrade`` load Alembic (about 10 MB) on first use only: the
services never migrate, the compose ``migrate`` step does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.db.engine import (
    Batch,
    BatchResult,
    Writer,
    claim_message,
    make_engine,
    sqlalchemy_url,
    unique_violation,
)
from shared.db.fills import record_fill, record_order
from shared.db.models import (
    METADATA,
    Base,
    ControlAction,
    ExecutionIntent,
    Fill,
    FlattenJobRecord,
    Order,
    ProcessedMessage,
    RiskDecision,
    RiskIntent,
    RiskStateEntry,
    SlippageCalibration,
)

if TYPE_CHECKING:
    from shared.db.migrate import downgrade, upgrade

__all__ = [
    "METADATA",
    "Base",
    "ControlAction",
    "Batch",
    "BatchResult",
    "ExecutionIntent",
    "Fill",
    "FlattenJobRecord",
    "Order",
    "ProcessedMessage",
    "RiskDecision",
    "RiskIntent",
    "RiskStateEntry",
    "SlippageCalibration",
    "claim_message",
    "downgrade",
    "unique_violation",
    "Writer",
    "make_engine",
    "record_fill",
    "record_order",
    "sqlalchemy_url",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    if name in ("upgrade", "downgrade"):
        from shared.db import migrate

        return getattr(migrate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
