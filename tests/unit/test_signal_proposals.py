"""From a signal to TradeProposed, and which candles are fresh enough to act on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.signal.proposals import actionable, to_proposal
from services.signal.strategies.base import Signal
from shared.messages import CandleClosed, ProposalAction, TradeProposed
from shared.money import Side

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
START_S = int(START.timestamp())
NS = 1_000_000_000
DECIDED = datetime(2026, 3, 1, 12, 5, 2, 250_000, tzinfo=UTC)


def closed_candle(granularity_s: int) -> CandleClosed:
    return CandleClosed(
        product_id="BTC-USD",
        granularity_s=granularity_s,
        start=START,
        open=Decimal("100"),
        high=Decimal("102"),
        low=Decimal("99"),
        close=Decimal("101"),
        volume=Decimal("3.5"),
    )


def signal(**changes: object) -> Signal:
    base = Signal(
        strategy="ema_cross",
        product_id="ETH-USD",
        granularity_s=300,
        candle_start=START_S,
        side=Side.BUY,
        action=ProposalAction.ENTRY,
        quote_size=Decimal("250.00"),
        reference_price=Decimal("2001.5"),
        stop_loss=Decimal("1950.25"),
        take_profit=Decimal("2100"),
        reason="fast EMA crossed above slow",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("granularity_s", [60, 300])
@pytest.mark.parametrize("max_lag_s", [0.0, 2.5, 30.0])
def test_actionable_up_to_exactly_the_max_lag_after_the_candle_end(
    granularity_s: int, max_lag_s: float
) -> None:
    candle = closed_candle(granularity_s)
    end_ns = (START_S + granularity_s) * NS
    limit = end_ns + int(max_lag_s * NS)
    assert actionable(candle, limit, max_lag_s)
    assert not actionable(candle, limit + 1, max_lag_s)
    assert actionable(candle, end_ns - 1, max_lag_s)  # stamped before the end: fresh


def test_a_backfilled_candle_is_history():
    candle = closed_candle(60)
    hour_later = (START_S + 3600) * NS
    assert not actionable(candle, hour_later, 30.0)
    assert actionable(candle, hour_later, 3600.0 - 60)


def test_to_proposal_maps_every_field():
    sig = signal()
    proposal = to_proposal(sig, Decimal("2001.45"), DECIDED)
    assert isinstance(proposal, TradeProposed)
    assert proposal.model_dump() == {
        "proposal_id": "ema_cross:ETH-USD:300:" + str(START_S) + ":ENTRY",
        "strategy": "ema_cross",
        "product_id": "ETH-USD",
        "side": Side.BUY,
        "action": ProposalAction.ENTRY,
        "quote_size": Decimal("250.00"),
        "reference_mid": Decimal("2001.45"),
        "stop_loss": Decimal("1950.25"),
        "take_profit": Decimal("2100"),
        "granularity_s": 300,
        "candle_start": START,
        "reason": "fast EMA crossed above slow",
        "decided_at": DECIDED,
    }
    assert proposal.proposal_id == sig.signal_id
    assert proposal.candle_start is not None and proposal.candle_start.utcoffset() is not None


def test_an_exit_without_levels_maps_too():
    sig = signal(
        side=Side.SELL,
        action=ProposalAction.EXIT,
        stop_loss=None,
        take_profit=None,
        candle_start=START_S + 300,
    )
    proposal = to_proposal(sig, Decimal("1990"), DECIDED)
    assert proposal.proposal_id == sig.signal_id and proposal.proposal_id.endswith(":EXIT")
    assert (proposal.side, proposal.action) == (Side.SELL, ProposalAction.EXIT)
    assert proposal.stop_loss is None and proposal.take_profit is None
    assert proposal.candle_start == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize("stop_loss", ["2100", "2100.01"])
def test_a_stop_at_or_above_the_take_profit_is_refused(stop_loss: str) -> None:
    with pytest.raises(ValidationError, match="stop_loss must be below take_profit"):
        to_proposal(signal(stop_loss=Decimal(stop_loss)), Decimal("2001"), DECIDED)
