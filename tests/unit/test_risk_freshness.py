"""Old news is not acted on: a stale entry proposal is rejected (an old exit still sells),
and equity is read for the loss limits only once every position has a market mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.risk.engine import RiskEngine
from services.risk.policy import ProductRules
from services.risk.portfolio import AppliedFill
from shared.config import load_config
from shared.messages import DecisionOutcome, ProposalAction, TradeProposed
from shared.money import Side
from tests.support.venue import CONFIG_DIR

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
RULES = {"BTC-USD": ProductRules("BTC-USD", "store_of_value", True, True, True)}


def _engine() -> RiskEngine:
    policy = load_config(CONFIG_DIR).policy.risk
    return RiskEngine(policy, Decimal(10_000), rules=RULES, max_proposal_age=timedelta(seconds=60))


def _proposal(action: ProposalAction, age: timedelta) -> TradeProposed:
    return TradeProposed(
        proposal_id=f"p:{action.value}:{age.total_seconds()}", strategy="s", product_id="BTC-USD",
        side=Side.BUY if action is ProposalAction.ENTRY else Side.SELL, action=action,
        quote_size=Decimal(100), reference_mid=Decimal(60_000), decided_at=NOW - age,
    )  # fmt: skip


def test_an_entry_is_fresh_up_to_the_limit_and_stale_past_it():
    at_limit = _engine().on_proposal(_proposal(ProposalAction.ENTRY, timedelta(seconds=60)), NOW)
    assert at_limit.decisions[0].outcome is DecisionOutcome.APPROVED
    late = _engine().on_proposal(
        _proposal(ProposalAction.ENTRY, timedelta(seconds=60, microseconds=1)), NOW
    )
    assert late.decisions[0].reasons == ("stale_proposal",) and not late.intents


def test_an_old_exit_still_sells():
    engine = _engine()
    engine.on_fill(AppliedFill("t-1", "i-1", "BTC-USD", Side.BUY, Decimal(60_000),
                               Decimal("0.01"), Decimal("3.6")), NOW)  # fmt: skip
    decided = engine.on_proposal(_proposal(ProposalAction.EXIT, timedelta(hours=3)), NOW)
    assert decided.decisions[0].outcome is DecisionOutcome.APPROVED
    assert decided.intents[0].order.base_size == Decimal("0.01")


def test_equity_marks_wait_for_a_market_mark_on_every_position():
    engine = _engine()
    engine.restore(
        fills=[AppliedFill("t-1", "i-1", "BTC-USD", Side.BUY, Decimal(60_000), Decimal("0.1"),
                           Decimal(0))],
        intents=[], entries=[], levels={}, jobs=[],
    )  # fmt: skip
    # after a restart the position is worth its fill price, 6000, not what the market says
    assert engine.watch_equity(NOW).watch is None and engine.book.watch.peak is None
    engine.book.portfolio.mark("BTC-USD", Decimal(50_000))
    assert engine.watch_equity(NOW).watch is not None
    assert engine.book.watch.peak == engine.book.watch.day_start == Decimal(9_000)


def test_an_old_quote_marks_the_position_but_fires_no_stop_and_moves_no_equity_mark():
    policy = load_config(CONFIG_DIR).policy.risk
    engine = RiskEngine(policy, Decimal(10_000), rules=RULES, max_tick_age=timedelta(seconds=10))
    engine.on_fill(AppliedFill("t-1", "i-1", "BTC-USD", Side.BUY, Decimal(60_000),
                               Decimal("0.01"), Decimal(0)), NOW)  # fmt: skip
    crash = (Decimal(50_000), Decimal("50000.02"))  # far through the 3% stop
    old = engine.on_tick(
        "BTC-USD", *crash, NOW, quoted_at=NOW - timedelta(seconds=10, microseconds=1)
    )
    assert old.intents == [] and old.watch is None and engine.book.watch.peak is None
    assert engine.book.portfolio.marks["BTC-USD"] == Decimal("50000.01")
    fresh = engine.on_tick("BTC-USD", *crash, NOW, quoted_at=NOW - timedelta(seconds=10))
    assert [i.order.intent_id.split(":")[0] for i in fresh.intents] == ["stop_loss"]
