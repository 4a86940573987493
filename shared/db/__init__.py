"""Postgres: the engine, the schema (models and Alembic migrations), idempotent handling."""

from shared.db.engine import claim_message, make_engine, sqlalchemy_url
from shared.db.fills import record_fill, record_order
from shared.db.migrate import downgrade, upgrade
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

__all__ = [
    "METADATA",
    "Base",
    "ControlAction",
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
    "make_engine",
    "record_fill",
    "record_order",
    "sqlalchemy_url",
    "upgrade",
]
