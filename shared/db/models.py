"""The Postgres schema: SQLAlchemy 2 models. Alembic migrations in shared/db/migrations.

Money columns are unconstrained NUMERIC: exact for any number of decimals, never rounded
on the way in. Enumerations are VARCHAR with CHECK constraints, so adding a value is a
plain migration. Every timestamp is ``timestamptz``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "ControlAction",
    "Fill",
    "FlattenJobRecord",
    "METADATA",
    "Order",
    "ProcessedMessage",
    "RiskDecision",
    "RiskIntent",
    "RiskStateEntry",
    "SlippageCalibration",
]

METADATA = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
MODES = ("PAPER", "LIVE", "BACKTEST")
SIDES = ("BUY", "SELL")
INTENT_KINDS = ("ENTRY", "EXIT", "FLATTEN")
ORDER_STATUSES = (
    "PENDING", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "EXPIRED",
)  # fmt: skip


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    metadata = METADATA
    type_annotation_map = {
        Decimal: Numeric(),
        datetime: DateTime(timezone=True),
        int: BigInteger(),
    }


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ProcessedMessage(Base):
    """A stream message a consumer group has applied; see ``claim_message``."""

    __tablename__ = "processed_messages"

    consumer_group: Mapped[str] = mapped_column(String(128), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    handled_at: Mapped[datetime] = _now()


class Order(Base):
    """One order, keyed by the client_order_id derived from its intent."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_one_of("side", SIDES), name="side"),
        CheckConstraint(_one_of("status", ORDER_STATUSES), name="status"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("(base_size IS NULL) <> (quote_size IS NULL)", name="one_size"),
        CheckConstraint("filled_size >= 0", name="filled_size_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    intent_id: Mapped[str] = mapped_column(String(128), index=True)
    venue_order_id: Mapped[str | None] = mapped_column(String(128))
    product_id: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    post_only: Mapped[bool] = mapped_column(default=False)
    base_size: Mapped[Decimal | None]
    quote_size: Mapped[Decimal | None]
    limit_price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(20))
    filled_size: Mapped[Decimal] = mapped_column(default=Decimal(0))
    average_price: Mapped[Decimal | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    mode: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Fill(Base):
    """One fill as the venue reported it: the ground truth slippage is calibrated on."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("venue", "trade_id"),
        CheckConstraint(_one_of("side", SIDES), name="side"),
        CheckConstraint(_one_of("liquidity", ("MAKER", "TAKER")), name="liquidity"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("price > 0 AND size > 0 AND fee >= 0", name="positive_amounts"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    venue: Mapped[str] = mapped_column(String(16))
    trade_id: Mapped[str] = mapped_column(String(128))
    client_order_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("orders.client_order_id"), index=True
    )
    product_id: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(4))
    price: Mapped[Decimal]
    size: Mapped[Decimal]
    fee: Mapped[Decimal]
    liquidity: Mapped[str] = mapped_column(String(5))
    arrival_mid: Mapped[Decimal]
    arrival_time: Mapped[datetime]
    filled_at: Mapped[datetime] = mapped_column(index=True)
    mode: Mapped[str] = mapped_column(String(8))
    recorded_at: Mapped[datetime] = _now()


class RiskDecision(Base):
    """Risk's verdict on one proposal, with its machine-readable reasons."""

    __tablename__ = "risk_decisions"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", ("APPROVED", "RESIZED", "REJECTED")), name="outcome"),
        CheckConstraint("approved_quote_size <= requested_quote_size", name="never_sized_up"),
        CheckConstraint(_one_of("action", ("ENTRY", "EXIT")), name="action"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[str] = mapped_column(String(128), unique=True)
    strategy: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(5))
    outcome: Mapped[str] = mapped_column(String(8))
    requested_quote_size: Mapped[Decimal]
    approved_quote_size: Mapped[Decimal]
    exit_base_size: Mapped[Decimal | None]
    reasons: Mapped[list[str]] = mapped_column(JSONB, default=list)
    decided_at: Mapped[datetime] = mapped_column(index=True)
    mode: Mapped[str] = mapped_column(String(8))


class ControlAction(Base):
    """An operator's pause, resume or flatten: who, what, when and why."""

    __tablename__ = "control_actions"
    __table_args__ = (
        CheckConstraint(_one_of("action", ("PAUSE", "RESUME", "FLATTEN")), name="action"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(8))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(index=True)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    mode: Mapped[str] = mapped_column(String(8))


class RiskIntent(Base):
    """An order intent risk issued, open until execution reports it finished."""

    __tablename__ = "risk_intents"
    __table_args__ = (
        CheckConstraint(_one_of("kind", INTENT_KINDS), name="kind"),
        CheckConstraint(_one_of("side", SIDES), name="side"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("(base_size IS NULL) <> (quote_size IS NULL)", name="one_size"),
    )

    intent_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    product_id: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(4))
    quote_size: Mapped[Decimal | None]
    base_size: Mapped[Decimal | None]
    reference_mid: Mapped[Decimal]
    proposal_id: Mapped[str | None] = mapped_column(String(128))
    flatten_id: Mapped[str | None] = mapped_column(String(64), index=True)
    stop_loss: Mapped[Decimal | None]
    take_profit: Mapped[Decimal | None]
    issued_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(String(20))
    filled_base: Mapped[Decimal | None]
    filled_quote: Mapped[Decimal | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    mode: Mapped[str] = mapped_column(String(8))


class ExecutionIntent(Base):
    """An order intent as execution received it, open until it reported the intent finished."""

    __tablename__ = "execution_intents"
    __table_args__ = (
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint(f"status IS NULL OR {_one_of('status', ORDER_STATUSES)}", name="status"),
    )

    intent_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    command: Mapped[dict[str, Any]] = mapped_column(JSONB)
    origin_ts: Mapped[int]
    product_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None]
    reported: Mapped[bool] = mapped_column(default=False, index=True)
    mode: Mapped[str] = mapped_column(String(8), index=True)


class FlattenJobRecord(Base):
    """A flatten and its progress per product, until every product in it is flat."""

    __tablename__ = "flatten_jobs"

    flatten_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any]] = mapped_column(JSONB)
    mode: Mapped[str] = mapped_column(String(8))


class RiskStateEntry(Base):
    """Risk's own state by name and mode: trading state, equity marks."""

    __tablename__ = "risk_state"

    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime]


class SlippageCalibration(Base):
    """One tier's fit of the slippage model to recorded taker fills (``services.calibrate``).

    ``impact_coefficient`` is the model's ``impact_coefficient_bps``: the extra cost, in
    bps, of an order of ``typical_notional_usd``; the two only mean something together.
    ``fit_error_bps`` and ``config_error_bps`` are the fit's and the configured model's
    mean absolute error on the held-out fills, so every row says whether it beat config.
    """

    __tablename__ = "slippage_calibrations"
    __table_args__ = (
        CheckConstraint("tier IN (1, 2, 3)", name="tier"),
        CheckConstraint(_one_of("mode", MODES), name="mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tier: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str | None] = mapped_column(String(32))
    base_slippage_bps: Mapped[Decimal]
    impact_coefficient: Mapped[Decimal]
    typical_notional_usd: Mapped[Decimal]
    sample_size: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    fit_error_bps: Mapped[Decimal | None]
    config_error_bps: Mapped[Decimal | None]
    mode: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = _now()
