"""The latest slippage calibration on record, for anything that prices orders.

``python -m services.calibrate`` stores one ``slippage_calibrations`` row per tier it
could fit. A tier's newest row for the trading mode is its calibration; a tier never
fitted keeps its configured parameters (``universe.yaml``), so ``latest_cost_model``
is "the latest calibration when there is one, else config", tier by tier.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.config.models import AppConfig
from shared.db.models import SlippageCalibration
from shared.messages import TradingMode
from shared.slippage import CostModel, TierCosts

__all__ = ["latest_calibration", "latest_cost_model"]


async def latest_calibration(
    connection: AsyncConnection, mode: TradingMode | str
) -> dict[int, TierCosts]:
    """Each tier's newest fitted parameters for ``mode``; empty when none was ever stored.

    Only tier-wide fits count (rows without a ``product_id``); fills of one mode say
    nothing about another's venue, so ``mode`` must match.
    """
    row = SlippageCalibration
    statement = (
        select(row.tier, row.base_slippage_bps, row.impact_coefficient, row.typical_notional_usd)
        .where(row.mode == TradingMode(mode).value, row.product_id.is_(None))
        .ext(distinct_on(row.tier))
        .order_by(row.tier, row.created_at.desc(), row.id.desc())
    )
    result = await connection.execute(statement)
    return {int(tier): TierCosts(base, impact, typical) for tier, base, impact, typical in result}


async def latest_cost_model(
    database: AsyncEngine, config: AppConfig, mode: TradingMode | str
) -> CostModel:
    """The cost model of ``config``, with each calibrated tier's latest fit in its place."""
    async with database.connect() as connection:
        calibration = await latest_calibration(connection, mode)
    return CostModel.from_config(config.universe, config.policy.execution, calibration)
