"""Execution's Postgres: the intents it took on, their orders and fills.

An intent is inserted together with its first step when its command is handled, so a
redelivered or republished command finds it and is not worked twice, and no intent is on
record without what was done for it. Orders are recorded PENDING before they are
sent, so a restart knows every order that might exist at the venue. Fills are unique
per (venue, trade id): a replay cannot double one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.execution.orders import RecordedOrder
from shared.db import (
    Batch,
    BatchResult,
    ExecutionIntent,
    Fill,
    Order,
    Writer,
    record_fill,
    record_order,
    unique_violation,
)
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import (
    IntentFinished,
    Liquidity,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    PlaceOrder,
    TradingMode,
)
from shared.money import Side

__all__ = ["ExecutionStore", "Progress", "StoredIntent"]

_KINDS = {"MARKET": OrderKind.MARKET_IOC, "LIMIT": OrderKind.LIMIT_GTC,
          "LIMIT_GTD": OrderKind.LIMIT_GTD}  # fmt: skip


@dataclass
class Progress:
    """What one step of an intent changed, written in one transaction."""

    sent: list[OrderRequest] = field(default_factory=list)
    updates: list[OrderUpdated] = field(default_factory=list)
    fills: list[OrderFilled] = field(default_factory=list)
    finished: IntentFinished | None = None
    cancel_reason: str = ""


@dataclass(frozen=True)
class StoredIntent:
    command: PlaceOrder
    origin_ts: int
    started_at: datetime
    cancel_reason: str
    orders: list[RecordedOrder]
    finished: tuple[OrderStatus, str, datetime] | None
    """How it ended (status, reason, when), if it did."""


class ExecutionStore:
    def __init__(self, database: AsyncEngine, mode: TradingMode, venue: str) -> None:
        self._database = database
        # intents are driven concurrently: a few writes may be under way at once
        self._writer = Writer(database, keep=4)
        self._mode = mode
        self._venue = venue

    async def close(self) -> None:
        """Close the connections held for writes (when the service stops)."""
        await self._writer.close()

    async def add_intent(
        self, command: PlaceOrder, origin_ts: int, now: datetime, first: Progress
    ) -> bool:
        """Take the intent on with its first step, in one transaction; False if it was taken
        on before (by any run), and then nothing is written."""
        try:
            async with self._writer.batch() as batch:
                await batch.execute(_INSERT_INTENT, {
                    "intent_id": command.intent_id,
                    "command": Jsonb(command.model_dump(mode="json")), "origin_ts": origin_ts,
                    "product_id": command.product_id, "started_at": now,
                    "mode": self._mode.value,
                })  # fmt: skip
                await self._write(batch, command, first, command.issued_at)
        except psycopg.errors.UniqueViolation as exc:
            if unique_violation(exc, _INTENT_KEY):
                return False
            raise
        return True

    async def save(
        self, intent: PlaceOrder, progress: Progress, arrival_time: datetime
    ) -> list[OrderFilled]:
        """Record the step; returns the fills that were new (a replayed one is not)."""
        async with self._writer.batch() as batch:
            recorded = await self._write(batch, intent, progress, arrival_time)
        return [fill for fill, result in recorded if await result.first() is not None]

    async def _write(
        self, batch: Batch, intent: PlaceOrder, progress: Progress, arrival_time: datetime
    ) -> list[tuple[OrderFilled, BatchResult]]:
        """Queue the step's statements; returns each fill with its insert's result."""
        fills = []
        for request in progress.sent:
            await record_order(batch, request, intent_id=intent.intent_id,
                               status=OrderStatus.PENDING, mode=self._mode)  # fmt: skip
        for fill in progress.fills:
            fills.append((fill, await record_fill(batch, fill, venue=self._venue,
                                                  arrival_time=arrival_time)))  # fmt: skip
        for update_ in progress.updates:
            await batch.execute(_UPDATE_ORDER, {
                "client_order_id": update_.client_order_id, "status": update_.status.value,
                "filled_size": update_.filled_size, "average_price": update_.average_price,
                "reason": update_.reason, "venue_order_id": update_.venue_order_id,
            })  # fmt: skip
        finished = progress.finished
        if progress.cancel_reason or finished is not None:
            await batch.execute(_UPDATE_INTENT, {
                "intent_id": intent.intent_id, "cancel_reason": progress.cancel_reason or None,
                "status": None if finished is None else finished.status.value,
                "reason": None if finished is None else finished.reason,
                "finished_at": None if finished is None else finished.finished_at,
            })  # fmt: skip
        return fills

    async def mark_reported(self, intent_id: str) -> None:
        async with self._writer.batch() as batch:
            await batch.execute(_MARK_REPORTED, {"intent_id": intent_id})

    async def unreported(self, intent_ids: Collection[str] | None = None) -> list[StoredIntent]:
        """Intents of this mode not yet reported finished: open ones, and any whose report
        a crash cut off; of ``intent_ids`` only, if given."""
        query = select(ExecutionIntent).where(
            ExecutionIntent.mode == self._mode.value, ~ExecutionIntent.reported
        )
        if intent_ids is not None:
            query = query.where(ExecutionIntent.intent_id.in_(list(intent_ids)))
        async with self._database.connect() as connection:
            rows = (await connection.execute(query.order_by(ExecutionIntent.started_at))).all()
            ids = [row.intent_id for row in rows]
            orders = (
                await connection.execute(
                    select(Order).where(Order.intent_id.in_(ids)).order_by(Order.id)
                )
            ).all()
            fees = dict(
                (
                    await connection.execute(
                        select(Fill.client_order_id, func.sum(Fill.fee))
                        .join(Order, Order.client_order_id == Fill.client_order_id)
                        .where(Order.intent_id.in_(ids))
                        .group_by(Fill.client_order_id)
                    )
                ).all()
            )
        by_intent: dict[str, list[RecordedOrder]] = defaultdict(list)
        for order in orders:
            by_intent[order.intent_id].append(_recorded(order, fees.get(order.client_order_id)))
        return [
            StoredIntent(
                command=PlaceOrder.model_validate(row.command),
                origin_ts=row.origin_ts,
                started_at=row.started_at,
                cancel_reason=row.cancel_reason,
                orders=by_intent[row.intent_id],
                finished=_ending(row),
            )  # fmt: skip
            for row in rows
        ]

    async def fills_of(self, intent_id: str) -> list[OrderFilled]:
        """Every recorded fill of an intent, oldest first, as ``OrderFilled``."""
        async with self._database.connect() as connection:
            rows = (
                await connection.execute(
                    select(Fill, Order.intent_id)
                    .join(Order, Order.client_order_id == Fill.client_order_id)
                    .where(Order.intent_id == intent_id, Fill.venue == self._venue)
                    .order_by(Fill.id)
                )
            ).all()
        return [_filled(row) for row in rows]

    async def venue_fills(self) -> list[OrderFilled]:
        """Every fill this venue recorded in this mode (the paper balances are built on them)."""
        async with self._database.connect() as connection:
            rows = (
                await connection.execute(
                    select(Fill, Order.intent_id)
                    .join(Order, Order.client_order_id == Fill.client_order_id)
                    .where(Fill.venue == self._venue, Fill.mode == self._mode.value)
                    .order_by(Fill.id)
                )
            ).all()
        return [_filled(row) for row in rows]

    async def finished_intent(self, intent_id: str) -> tuple[str, str] | None:
        """(status, reason) of a finished intent; None while open or unknown."""
        async with self._database.connect() as connection:
            row = (
                await connection.execute(
                    select(ExecutionIntent.status, ExecutionIntent.reason).where(
                        ExecutionIntent.intent_id == intent_id
                    )
                )
            ).first()
        if row is None or row.status is None:
            return None
        return row.status, row.reason


# The hot path's SQL (see shared.db.engine): the columns are the models' in shared.db.
_INSERT_INTENT = """
    insert into execution_intents (intent_id, command, origin_ts, product_id, started_at,
        cancel_reason, reason, reported, mode)
    values (%(intent_id)s, %(command)s, %(origin_ts)s, %(product_id)s, %(started_at)s, '', '',
        false, %(mode)s)
"""
_INTENT_KEY = "pk_execution_intents"  # an intent is taken on once
_UPDATE_ORDER = """
    update orders
    set status = %(status)s, filled_size = %(filled_size)s, average_price = %(average_price)s,
        reason = %(reason)s, venue_order_id = %(venue_order_id)s, updated_at = now()
    where client_order_id = %(client_order_id)s
"""
# A step sets the cancel reason, the ending, or both; what it leaves null stays as it was.
_UPDATE_INTENT = """
    update execution_intents
    set cancel_reason = coalesce(%(cancel_reason)s, cancel_reason),
        status = coalesce(%(status)s, status), reason = coalesce(%(reason)s, reason),
        finished_at = coalesce(%(finished_at)s, finished_at)
    where intent_id = %(intent_id)s
"""
_MARK_REPORTED = "update execution_intents set reported = true where intent_id = %(intent_id)s"


def _ending(row: Any) -> tuple[OrderStatus, str, datetime] | None:
    if row.status is None:
        return None
    return OrderStatus(row.status), row.reason, row.finished_at


def _recorded(order: Any, fees: Decimal | None) -> RecordedOrder:
    """An ``orders`` row as the state machine resumes it."""
    request = OrderRequest(
        client_order_id=order.client_order_id, product_id=order.product_id,
        side=Side(order.side), kind=_KINDS[order.order_type], base_size=order.base_size,
        quote_size=order.quote_size, limit_price=order.limit_price, post_only=order.post_only,
    )  # fmt: skip
    average = order.average_price or Decimal(0)
    return RecordedOrder(
        request=request, status=OrderStatus(order.status), venue_order_id=order.venue_order_id,
        filled_base=order.filled_size, filled_quote=order.filled_size * average,
        fees=fees or Decimal(0), reason=order.reason,
    )  # fmt: skip


def _filled(fill: Any) -> OrderFilled:
    """A ``fills`` row joined to its order's intent id, as it was published."""
    return OrderFilled(
        client_order_id=fill.client_order_id, intent_id=fill.intent_id, trade_id=fill.trade_id,
        product_id=fill.product_id, side=Side(fill.side), price=fill.price, size=fill.size,
        fee=fill.fee, liquidity=Liquidity(fill.liquidity), arrival_mid=fill.arrival_mid,
        mode=TradingMode(fill.mode), filled_at=fill.filled_at,
    )  # fmt: skip
