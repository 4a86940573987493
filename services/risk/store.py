"""Postgres for risk: what it decided, the intents it issued, its state, the audit trail.

Fills are execution's (the ``fills`` table, joined to ``orders`` for their intent); risk
only reads them to rebuild its portfolio. Everything risk writes for one event goes in
one transaction, so after a crash Postgres holds either all of it or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.risk.engine import Effects, IssuedIntent, liquidity_for
from services.risk.flatten import FlattenJob
from services.risk.ledger import EntryRecord, OpenIntent
from services.risk.portfolio import AppliedFill
from services.risk.state import EquityWatch, TradingState
from shared.db import (
    Batch,
    Fill,
    FlattenJobRecord,
    Order,
    RiskDecision,
    RiskIntent,
    RiskStateEntry,
    Writer,
    unique_violation,
)
from shared.messages import (
    DecisionOutcome,
    IntentKind,
    PlaceOrder,
    ProposalAction,
    ProposalDecided,
    TradingMode,
)
from shared.money import Side

__all__ = ["AlreadyDecided", "Restored", "RiskStore"]

Levels = tuple[Decimal | None, Decimal | None]


class AlreadyDecided(Exception):
    """A proposal was decided before (a redelivery after a crash): nothing was written."""

    def __init__(self, proposal_ids: list[str]) -> None:
        super().__init__(f"a proposal of {', '.join(proposal_ids)} was decided before")


@dataclass
class Restored:
    state: TradingState | None
    watch: EquityWatch | None
    fills: list[AppliedFill]
    intents: list[OpenIntent]
    entries: list[EntryRecord]
    levels: dict[str, Levels]
    jobs: list[FlattenJob]


class RiskStore:
    def __init__(self, engine: AsyncEngine, mode: TradingMode) -> None:
        self._engine = engine
        self._writer = Writer(engine)
        self.mode = mode.value

    # --- reading -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connections held for writes (when the service stops)."""
        await self._writer.close()

    async def load(self, now: datetime, retention: timedelta) -> Restored:
        async with self._engine.connect() as connection:
            states = await self._states(connection)
            return Restored(
                state=TradingState.from_json(states["trading"]) if "trading" in states else None,
                watch=EquityWatch.from_json(states["watch"]) if "watch" in states else None,
                fills=await self._fills(connection),
                intents=await self._open_intents(connection),
                entries=await self._entries(connection, now - retention),
                levels=await self._levels(connection),
                jobs=await self._jobs(connection, active_only=True),
            )

    async def _states(self, connection: AsyncConnection) -> dict[str, dict[str, Any]]:
        rows = await connection.execute(
            select(RiskStateEntry.name, RiskStateEntry.value).where(
                RiskStateEntry.mode == self.mode
            )
        )
        return {name: value for name, value in rows}

    async def _fills(self, connection: AsyncConnection) -> list[AppliedFill]:
        rows = await connection.execute(
            select(
                Fill.trade_id,
                Order.intent_id,
                Fill.product_id,
                Fill.side,
                Fill.price,
                Fill.size,
                Fill.fee,
            )  # fmt: skip
            .join(Order, Order.client_order_id == Fill.client_order_id)
            # only fills of intents risk issued, as risk takes them while it runs
            # (RiskService.on_report): another order's fill is no position of risk's
            .join(RiskIntent, RiskIntent.intent_id == Order.intent_id)
            .where(Fill.mode == self.mode, RiskIntent.mode == self.mode)
            .order_by(Fill.filled_at, Fill.id)
        )
        return [
            AppliedFill(trade, intent, product, Side(side), price, size, fee)
            for trade, intent, product, side, price, size, fee in rows
        ]

    async def _open_intents(self, connection: AsyncConnection) -> list[OpenIntent]:
        filled = (
            select(Order.intent_id, func.sum(Fill.price * Fill.size).label("quote"))
            .join(Fill, Fill.client_order_id == Order.client_order_id)
            .group_by(Order.intent_id)
            .subquery()
        )
        rows = await connection.execute(
            select(RiskIntent, filled.c.quote)
            .outerjoin(filled, filled.c.intent_id == RiskIntent.intent_id)
            .where(RiskIntent.mode == self.mode, RiskIntent.finished_at.is_(None))
            .order_by(RiskIntent.issued_at)
        )
        return [
            OpenIntent(
                row.intent_id,
                IntentKind(row.kind),
                row.product_id,
                Side(row.side),
                row.quote_size if row.kind == IntentKind.ENTRY and row.quote_size else Decimal(0),
                row.issued_at,
                row.flatten_id,
                row.quote or Decimal(0),
            )  # fmt: skip
            for row in rows
        ]

    async def _entries(self, connection: AsyncConnection, since: datetime) -> list[EntryRecord]:
        rows = await connection.execute(
            select(RiskIntent.issued_at, RiskIntent.product_id, RiskIntent.quote_size)
            .where(
                RiskIntent.mode == self.mode,
                RiskIntent.kind == IntentKind.ENTRY.value,
                RiskIntent.issued_at > since,
            )
            .order_by(RiskIntent.issued_at)  # fmt: skip
        )
        return [EntryRecord(at, product, quote or Decimal(0)) for at, product, quote in rows]

    async def _levels(self, connection: AsyncConnection) -> dict[str, Levels]:
        rows = await connection.execute(
            select(RiskIntent.product_id, RiskIntent.stop_loss, RiskIntent.take_profit)
            .where(RiskIntent.mode == self.mode, RiskIntent.kind == IntentKind.ENTRY.value)
            .order_by(RiskIntent.product_id, RiskIntent.issued_at.desc())
            .ext(distinct_on(RiskIntent.product_id))
        )
        return {product: (stop, take) for product, stop, take in rows}

    async def _jobs(self, connection: AsyncConnection, *, active_only: bool) -> list[FlattenJob]:
        query = select(FlattenJobRecord.progress).where(FlattenJobRecord.mode == self.mode)
        if active_only:
            query = query.where(FlattenJobRecord.finished_at.is_(None))
        return [FlattenJob.from_json(progress) for (progress,) in await connection.execute(query)]

    async def decision(self, proposal_id: str) -> ProposalDecided | None:
        """The decision already taken on ``proposal_id``, for a redelivery."""
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(RiskDecision).where(RiskDecision.proposal_id == proposal_id)
                )
            ).first()
        if row is None:
            return None
        return ProposalDecided(
            proposal_id=row.proposal_id, product_id=row.product_id, strategy=row.strategy,
            action=ProposalAction(row.action), outcome=DecisionOutcome(row.outcome),
            requested_quote_size=row.requested_quote_size,
            approved_quote_size=row.approved_quote_size, exit_base_size=row.exit_base_size,
            reasons=tuple(row.reasons), decided_at=row.decided_at,
        )  # fmt: skip

    async def issued(self, intent_id: str) -> bool:
        """Whether risk issued ``intent_id`` in this mode, finished or not."""
        async with self._engine.connect() as connection:
            found = await connection.execute(
                select(RiskIntent.intent_id).where(
                    RiskIntent.intent_id == intent_id, RiskIntent.mode == self.mode
                )
            )
            return found.first() is not None

    async def open_orders(self) -> list[PlaceOrder]:
        """The order of every intent not yet reported finished, oldest first."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(RiskIntent)
                .where(RiskIntent.mode == self.mode, RiskIntent.finished_at.is_(None))
                .order_by(RiskIntent.issued_at)
            )
            return [_order(row) for row in rows]

    async def recent_decisions(
        self, limit: int, product_id: str | None = None, outcome: str | None = None
    ) -> list[dict[str, Any]]:
        query = select(RiskDecision).where(RiskDecision.mode == self.mode)
        if product_id:
            query = query.where(RiskDecision.product_id == product_id)
        if outcome:
            query = query.where(RiskDecision.outcome == outcome)
        query = query.order_by(RiskDecision.decided_at.desc(), RiskDecision.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_decision_json(row) for row in rows]

    async def flatten_job(self, flatten_id: str) -> FlattenJob | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(FlattenJobRecord.progress).where(
                        FlattenJobRecord.flatten_id == flatten_id,
                        FlattenJobRecord.mode == self.mode,
                    )
                )
            ).first()
        return None if row is None else FlattenJob.from_json(row[0])

    # --- writing -----------------------------------------------------------------------

    async def save(self, effects: Effects, now: datetime) -> None:
        """Everything ``effects`` must keep, in one transaction.

        Raises :class:`AlreadyDecided`, and writes nothing, if one of its decisions is on
        record already: deciding a proposal is checked by the decision's primary key, in
        the same round trip as the rest, instead of by a lookup before every decision.
        """
        try:
            await self._write(effects, now)
        except psycopg.errors.UniqueViolation as exc:
            if unique_violation(exc, _DECISION_KEY):
                raise AlreadyDecided([d.proposal_id for d in effects.decisions]) from exc
            raise

    async def _write(self, effects: Effects, now: datetime) -> None:
        async with self._writer.batch() as batch:
            for decision in effects.decisions:
                await batch.execute(_INSERT_DECISION, self._decision_row(decision))
            for issued in effects.intents:
                await batch.execute(_INSERT_INTENT, self._intent_row(issued))
            for report in effects.finished:
                await batch.execute(_FINISH_INTENT, {
                    "intent_id": report.intent_id, "finished_at": report.finished_at,
                    "status": report.status.value, "filled_base": report.filled_base,
                    "filled_quote": report.filled_quote, "reason": report.reason,
                })  # fmt: skip
            for change in effects.audit:
                await batch.execute(_INSERT_CONTROL_ACTION, {
                    "action": change.action, "actor": change.actor, "reason": change.reason,
                    "requested_at": change.changed_at, "mode": self.mode,
                    "outcome": Jsonb({"entries_allowed": change.entries_allowed,
                                      "flatten_id": change.flatten_id}),
                })  # fmt: skip
            for job in effects.jobs.values():
                await batch.execute(_SAVE_JOB, {
                    "flatten_id": job.flatten_id, "actor": job.actor, "reason": job.reason,
                    "requested_at": job.requested_at, "finished_at": job.finished_at,
                    "progress": Jsonb(job.to_json()), "mode": self.mode,
                })  # fmt: skip
            if effects.state is not None:
                await self._save_state(batch, "trading", effects.state.to_json(), now)
            if effects.watch is not None:
                await self._save_state(batch, "watch", effects.watch.to_json(), now)

    async def save_watch(self, watch: EquityWatch, now: datetime) -> None:
        async with self._writer.batch() as batch:
            await self._save_state(batch, "watch", watch.to_json(), now)

    async def _save_state(
        self, batch: Batch, name: str, value: dict[str, Any], now: datetime
    ) -> None:
        await batch.execute(
            _SAVE_STATE, {"mode": self.mode, "name": name, "value": Jsonb(value), "updated_at": now}
        )

    def _decision_row(self, decision: ProposalDecided) -> dict[str, Any]:
        return {
            "proposal_id": decision.proposal_id, "strategy": decision.strategy,
            "product_id": decision.product_id, "action": decision.action.value,
            "outcome": decision.outcome.value,
            "requested_quote_size": decision.requested_quote_size,
            "approved_quote_size": decision.approved_quote_size,
            "exit_base_size": decision.exit_base_size, "reasons": Jsonb(list(decision.reasons)),
            "decided_at": decision.decided_at, "mode": self.mode,
        }  # fmt: skip

    def _intent_row(self, issued: IssuedIntent) -> dict[str, Any]:
        order = issued.order
        return {
            "intent_id": order.intent_id, "kind": order.kind.value,
            "product_id": order.product_id, "side": order.side.value,
            "quote_size": order.quote_size, "base_size": order.base_size,
            "reference_mid": order.reference_mid, "proposal_id": order.proposal_id,
            "flatten_id": issued.flatten_id, "stop_loss": issued.stop_loss,
            "take_profit": issued.take_profit, "issued_at": order.issued_at, "reason": "",
            "mode": self.mode,
        }  # fmt: skip


# The hot path's SQL (see shared.db.engine): the columns are the models' in shared.db.
_INSERT_DECISION = """
    insert into risk_decisions (proposal_id, strategy, product_id, action, outcome,
        requested_quote_size, approved_quote_size, exit_base_size, reasons, decided_at, mode)
    values (%(proposal_id)s, %(strategy)s, %(product_id)s, %(action)s, %(outcome)s,
        %(requested_quote_size)s, %(approved_quote_size)s, %(exit_base_size)s, %(reasons)s,
        %(decided_at)s, %(mode)s)
"""
_DECISION_KEY = "uq_risk_decisions_proposal_id"  # a proposal is decided once
_INSERT_INTENT = """
    insert into risk_intents (intent_id, kind, product_id, side, quote_size, base_size,
        reference_mid, proposal_id, flatten_id, stop_loss, take_profit, issued_at, reason, mode)
    values (%(intent_id)s, %(kind)s, %(product_id)s, %(side)s, %(quote_size)s, %(base_size)s,
        %(reference_mid)s, %(proposal_id)s, %(flatten_id)s, %(stop_loss)s, %(take_profit)s,
        %(issued_at)s, %(reason)s, %(mode)s)
    on conflict (intent_id) do nothing
"""
_FINISH_INTENT = """
    update risk_intents
    set finished_at = %(finished_at)s, status = %(status)s, filled_base = %(filled_base)s,
        filled_quote = %(filled_quote)s, reason = %(reason)s
    where intent_id = %(intent_id)s and finished_at is null
"""
_INSERT_CONTROL_ACTION = """
    insert into control_actions (action, actor, reason, requested_at, outcome, mode)
    values (%(action)s, %(actor)s, %(reason)s, %(requested_at)s, %(outcome)s, %(mode)s)
"""
_SAVE_JOB = """
    insert into flatten_jobs (flatten_id, actor, reason, requested_at, finished_at, progress,
        mode)
    values (%(flatten_id)s, %(actor)s, %(reason)s, %(requested_at)s, %(finished_at)s,
        %(progress)s, %(mode)s)
    on conflict (flatten_id) do update
    set finished_at = excluded.finished_at, progress = excluded.progress
"""
_SAVE_STATE = """
    insert into risk_state (mode, name, value, updated_at)
    values (%(mode)s, %(name)s, %(value)s, %(updated_at)s)
    on conflict (mode, name) do update
    set value = excluded.value, updated_at = excluded.updated_at
"""


def _order(row: Any) -> PlaceOrder:
    kind = IntentKind(row.kind)
    return PlaceOrder(
        intent_id=row.intent_id, kind=kind, product_id=row.product_id, side=Side(row.side),
        base_size=row.base_size, quote_size=row.quote_size, reference_mid=row.reference_mid,
        liquidity=liquidity_for(kind), proposal_id=row.proposal_id, issued_at=row.issued_at,
    )  # fmt: skip


def _decision_json(row: Any) -> dict[str, Any]:
    return {
        "proposal_id": row["proposal_id"], "strategy": row["strategy"],
        "product_id": row["product_id"], "action": row["action"], "outcome": row["outcome"],
        "requested_quote_size": str(row["requested_quote_size"]),
        "approved_quote_size": str(row["approved_quote_size"]),
        "exit_base_size": None if row["exit_base_size"] is None else str(row["exit_base_size"]),
        "reasons": list(row["reasons"]), "decided_at": row["decided_at"].isoformat(),
    }  # fmt: skip
