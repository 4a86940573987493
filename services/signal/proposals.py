"""From a strategy's signal to the ``TradeProposed`` message, and when a candle may act.

A candle published long after its bucket ended (the start-up backfill, a catch-up after
market-data was down) is history: strategies learn from it, but it causes no proposal,
so a restart never turns old signals into new orders. "Long" is ``max_lag_s`` between
the candle's end and its envelope's ``origin_ts``, both fixed in the message, so every
reader of the stream (a test, a backtest) draws the line in the same place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.signal.strategies.base import Signal
from shared.messages import CandleClosed, TradeProposed

__all__ = ["actionable", "to_proposal"]

_NS = 1_000_000_000


def actionable(candle: CandleClosed, origin_ts: int, max_lag_s: float) -> bool:
    """True when ``candle`` was published within ``max_lag_s`` of its bucket's end."""
    end_ns = (int(candle.start.timestamp()) + candle.granularity_s) * _NS
    return origin_ts - end_ns <= max_lag_s * _NS


def to_proposal(signal: Signal, reference_mid: Decimal, decided_at: datetime) -> TradeProposed:
    return TradeProposed(
        proposal_id=signal.signal_id,
        strategy=signal.strategy,
        product_id=signal.product_id,
        side=signal.side,
        action=signal.action,
        quote_size=signal.quote_size,
        reference_mid=reference_mid,
        stop_loss=signal.stop_loss,
        take_profit=signal.take_profit,
        granularity_s=signal.granularity_s,
        candle_start=datetime.fromtimestamp(signal.candle_start, UTC),
        reason=signal.reason,
        decided_at=decided_at,
    )
