"""Postgres for calibration: the fills it measures, the rows it stores, what a report reads.

Every read is of one trading mode and a time window: fills by ``filled_at``, orders by
``created_at``, risk decisions by ``decided_at``, intents by ``started_at``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.calibrate.export import CalibrationRun
from services.calibrate.measure import FillRecord
from services.calibrate.report import ReportData
from shared.db.models import ExecutionIntent, Fill, Order, RiskDecision, SlippageCalibration
from shared.messages import Liquidity, TradingMode
from shared.money import Side

__all__ = ["read_fills", "read_report_data", "save_calibration"]

NO_REASON = "(no reason given)"


async def read_fills(
    connection: AsyncConnection, mode: TradingMode, since: datetime | None, until: datetime
) -> list[FillRecord]:
    """The mode's fills in ``[since, until)``, oldest first (all before ``until`` if no since)."""
    statement = select(Fill).where(Fill.mode == mode.value, Fill.filled_at < until)
    if since is not None:
        statement = statement.where(Fill.filled_at >= since)
    rows = await connection.execute(statement.order_by(Fill.filled_at, Fill.id))
    return [
        FillRecord(
            client_order_id=row.client_order_id,
            product_id=row.product_id,
            side=Side(row.side),
            liquidity=Liquidity(row.liquidity),
            price=row.price,
            size=row.size,
            fee=row.fee,
            arrival_mid=row.arrival_mid,
            filled_at=row.filled_at,
        )  # fmt: skip
        for row in rows
    ]


async def save_calibration(connection: AsyncConnection, run: CalibrationRun) -> None:
    """One row per fitted tier, all stamped with the run's time, in the caller's transaction."""
    rows: list[dict[str, Any]] = [
        {
            "tier": fit.tier,
            "product_id": None,
            "base_slippage_bps": fit.costs.base_slippage_bps,
            "impact_coefficient": fit.costs.impact_coefficient_bps,
            "typical_notional_usd": fit.costs.typical_notional,
            "sample_size": fit.sample_size,
            "window_start": run.window_start,
            "window_end": run.window_end,
            "fit_error_bps": fit.fit_error_bps,
            "config_error_bps": fit.config_error_bps,
            "mode": run.mode.value,
            "created_at": run.created_at,
        }  # fmt: skip
        for fit in run.fits
    ]
    if rows:
        await connection.execute(insert(SlippageCalibration), rows)


async def read_report_data(
    connection: AsyncConnection, mode: TradingMode, since: datetime, until: datetime
) -> ReportData:
    orders = Order.mode == mode.value, Order.created_at >= since, Order.created_at < until
    decisions = (RiskDecision.mode == mode.value, RiskDecision.decided_at >= since,
                 RiskDecision.decided_at < until)  # fmt: skip
    intents = (ExecutionIntent.mode == mode.value, ExecutionIntent.started_at >= since,
               ExecutionIntent.started_at < until)  # fmt: skip
    return ReportData(
        mode=mode, since=since, until=until,
        order_statuses=await _count_by(connection, Order.status, *orders),
        fills=await read_fills(connection, mode, since, until),
        decision_outcomes=await _count_by(connection, RiskDecision.outcome, *decisions),
        rejection_reasons=await _risk_reasons(connection, *decisions),
        rejected_orders=await _count_by(connection, Order.reason, *orders,
                                        Order.status == "REJECTED"),
        rejected_intents=await _count_by(connection, ExecutionIntent.reason, *intents,
                                         ExecutionIntent.status == "REJECTED"),
    )  # fmt: skip


async def _count_by(connection: AsyncConnection, column: Any, *where: Any) -> dict[str, int]:
    rows = await connection.execute(select(column, func.count()).where(*where).group_by(column))
    counts: Counter[str] = Counter()
    for key, count in rows:
        counts[key or NO_REASON] += count
    return dict(counts)


async def _risk_reasons(connection: AsyncConnection, *where: Any) -> dict[str, int]:
    """Each reason of each REJECTED decision counted once (a decision may give several)."""
    rows = await connection.execute(
        select(RiskDecision.reasons).where(*where, RiskDecision.outcome == "REJECTED")
    )
    counts: Counter[str] = Counter()
    for (reasons,) in rows:
        counts.update(reasons or [NO_REASON])
    return dict(counts)
