"""The engine: stop-loss and take-profit on ticks, the loss limits, pause, resume, flatten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.risk.engine import (
    FLATTEN_CANCELS,
    Conflict,
    Effects,
    RiskEngine,
)
from services.risk.flatten import FlattenJob, ProductProgress, ProgressStatus
from services.risk.ledger import HOUR, EntryRecord, OpenIntent
from services.risk.state import EquityWatch, TradingState
from shared.messages import (
    DecisionOutcome,
    IntentKind,
    LiquidityPreference,
    OrderStatus,
    PlaceOrder,
)
from shared.money import Side
from tests.unit.risk_helpers import (
    MICROSECOND,
    NOW,
    D,
    engine,
    entry,
    exit_,
    fill,
    finished,
    hold,
    policy,
    tick,
)

SECOND = timedelta(seconds=1)


def bought(
    risk: RiskEngine, product_id: str, base: str, price: str, *,
    stop_loss: str | None = None, take_profit: str | None = None, at: datetime = NOW,
) -> None:  # fmt: skip
    """An entry approved, filled in full at ``price`` and finished."""
    proposal = entry(
        product_id, D(base) * D(price), mid=price, stop_loss=stop_loss, take_profit=take_profit,
        at=at,
    )  # fmt: skip
    effects = risk.on_proposal(proposal, at)
    assert effects.decisions[0].outcome is DecisionOutcome.APPROVED
    risk.on_fill(fill(product_id, Side.BUY, price, base, intent_id=proposal.proposal_id), at)
    risk.on_intent_finished(
        finished(proposal.proposal_id, product_id, status=OrderStatus.FILLED, at=at), at
    )


def quote(risk: RiskEngine, product_id: str, bid: str, ask: str | None = None,
          at: datetime = NOW) -> list[PlaceOrder]:  # fmt: skip
    effects = risk.on_tick(product_id, D(bid), D(ask or bid), at)
    return [issued.order for issued in effects.intents]


# --- stop-loss and take-profit ----------------------------------------------------------


def test_the_policy_stop_loss_sells_the_position_when_the_bid_reaches_it() -> None:
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "1.5", "100")
    assert quote(risk, "BTC-USD", "97.01", "97.5") == []
    later = NOW + SECOND
    [order] = quote(risk, "BTC-USD", "97", "97.2", later)
    assert (order.kind, order.side, order.product_id) == (IntentKind.EXIT, Side.SELL, "BTC-USD")
    assert order.base_size == D("1.5") and order.quote_size is None
    assert order.liquidity is LiquidityPreference.TAKER
    assert order.reference_mid == D("97.1") and order.issued_at == later
    assert order.intent_id.startswith("stop_loss:BTC-USD:")
    assert order.proposal_id is None


def test_the_policy_take_profit_sells_the_position_when_the_bid_reaches_it() -> None:
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "2", "100")
    assert quote(risk, "BTC-USD", "105.99", "106.5") == []
    [order] = quote(risk, "BTC-USD", "106", "106.1")
    assert order.intent_id.startswith("take_profit:BTC-USD:")
    assert order.base_size == D(2)


def test_the_levels_are_measured_from_the_average_cost() -> None:
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "1", "100")
    bought(risk, "BTC-USD", "1", "110")  # average 105: stop 101.85, take 111.30
    assert quote(risk, "BTC-USD", "101.86") == []
    assert quote(risk, "BTC-USD", "111.29") == []
    [order] = quote(risk, "BTC-USD", "101.85")
    assert order.intent_id.startswith("stop_loss:") and order.base_size == D(2)


def test_the_strategys_levels_tighten_the_policys() -> None:
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "1", "100", stop_loss="98", take_profit="103")
    assert quote(risk, "BTC-USD", "98.01") == []
    [order] = quote(risk, "BTC-USD", "98")
    assert order.intent_id.startswith("stop_loss:")
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "1", "100", stop_loss="98", take_profit="103")
    assert quote(risk, "BTC-USD", "102.99") == []
    [order] = quote(risk, "BTC-USD", "103")
    assert order.intent_id.startswith("take_profit:")


def test_looser_strategy_levels_do_not_loosen_the_policys() -> None:
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "1", "100", stop_loss="90", take_profit="120")
    [order] = quote(risk, "BTC-USD", "97")
    assert order.intent_id.startswith("stop_loss:")
    risk = engine(policy(stop_loss_pct=D(3), take_profit_pct=D(6)))
    bought(risk, "BTC-USD", "1", "100", stop_loss="90", take_profit="120")
    [order] = quote(risk, "BTC-USD", "106")
    assert order.intent_id.startswith("take_profit:")


def test_only_one_exit_is_in_flight_per_product() -> None:
    risk = engine(policy(stop_loss_pct=D(3)))
    bought(risk, "BTC-USD", "1", "100")
    [first] = quote(risk, "BTC-USD", "97")
    assert quote(risk, "BTC-USD", "96", at=NOW + SECOND) == []
    decision = risk.on_proposal(exit_("BTC-USD"), NOW + SECOND).decisions[0]
    assert decision.reasons == ("exit_in_flight",)
    risk.on_intent_finished(
        finished(first.intent_id, kind=IntentKind.EXIT, side=Side.SELL), NOW + 2 * SECOND
    )
    # a refused stop is retried, but not on every tick: 5 s after the last attempt
    assert quote(risk, "BTC-USD", "96", at=NOW + 5 * SECOND - timedelta(microseconds=1)) == []
    [again] = quote(risk, "BTC-USD", "96", at=NOW + 5 * SECOND)
    assert again.intent_id != first.intent_id and again.base_size == D(1)


def test_an_approved_exit_in_flight_holds_off_the_stop() -> None:
    risk = engine(policy(stop_loss_pct=D(3)))
    bought(risk, "BTC-USD", "1", "100")
    assert risk.on_proposal(exit_("BTC-USD"), NOW).intents
    assert quote(risk, "BTC-USD", "90") == []


def test_dust_is_not_exited() -> None:
    risk = engine(policy(stop_loss_pct=D(3), dust_threshold_usd=D(1)))
    hold(risk, "BTC-USD", "0.015", "100")  # 1.50 now, 0.75 at 50
    assert quote(risk, "BTC-USD", "50") == []
    assert quote(risk, "BTC-USD", "66.66") == []  # 0.9999
    [order] = quote(risk, "BTC-USD", "66.67")  # 1.00005: no longer dust
    assert order.intent_id.startswith("stop_loss:") and order.base_size == D("0.015")


def test_a_product_being_flattened_is_left_to_the_flatten() -> None:
    risk = engine(policy(stop_loss_pct=D(3)))
    bought(risk, "BTC-USD", "1", "100")
    risk.flatten("f-1", None, "operator", "done for today", NOW)
    assert quote(risk, "BTC-USD", "50") == []


def test_levels_restored_from_open_intents_still_apply() -> None:
    risk = engine(policy(stop_loss_pct=D(10)))
    entry_intent = OpenIntent(
        "p-1", IntentKind.ENTRY, "BTC-USD", Side.BUY, D(200), NOW, filled_quote=D(100)
    )
    risk.restore(
        fills=[fill("BTC-USD", Side.BUY, "100", "1", intent_id="p-1", trade_id="t-1")],
        intents=[entry_intent],
        entries=[EntryRecord(NOW - HOUR, "ETH-USD", D(50)), EntryRecord(NOW, "BTC-USD", D(200))],
        levels={"BTC-USD": (D(98), D(104))},
        jobs=[],
    )
    assert risk.book.intents.reserved("BTC-USD") == D(100)
    risk.on_intent_finished(finished("p-1", status=OrderStatus.FILLED), NOW)
    assert risk.book.windows.count(NOW, 2 * HOUR) == 2
    [order] = quote(risk, "BTC-USD", "98")
    assert order.intent_id.startswith("stop_loss:")


# --- daily loss and drawdown -------------------------------------------------------------


def loss_engine(**changes: object) -> RiskEngine:
    risk = engine(policy(stop_loss_pct=D(50), **changes))
    hold(risk, "BTC-USD", "10", "100")  # 1000 of 10000 equity in BTC
    assert tick(risk, "BTC-USD", "100").watch is not None  # today's opening equity: 10000
    return risk


def test_a_tick_that_takes_the_day_to_its_loss_limit_pauses_entries() -> None:
    risk = loss_engine(daily_loss_limit_pct=D(3), max_drawdown_pct=D(10))
    calm = tick(risk, "BTC-USD", "70.01", NOW + SECOND)  # 9700.10: down 2.999%
    assert calm.state is None and calm.audit == [] and calm.cancels == []
    at = NOW + 2 * SECOND
    effects = tick(risk, "BTC-USD", "70", at)  # 9700, all of it an open position
    assert effects.state is not None and effects.state.entries_allowed is False
    assert effects.state.actor == "risk" and effects.state.reason.startswith("daily_loss_limit")
    [audit] = effects.audit
    assert (audit.action, audit.actor, audit.entries_allowed) == ("PAUSE", "risk", False)
    assert audit.changed_at == at
    [cancel] = effects.cancels
    assert cancel.kinds == (IntentKind.ENTRY,) and cancel.product_ids == ()
    assert effects.intents == []  # exits are untouched: the stop is far below
    assert risk.book.state.name == "PAUSED"
    again = tick(risk, "BTC-USD", "69", NOW + 3 * SECOND)
    assert again.audit == [] and again.cancels == [] and again.state is None
    decision = risk.on_proposal(entry("ETH-USD"), NOW + 3 * SECOND).decisions[0]
    assert decision.reasons == ("trading_paused", "daily_loss_limit")


def test_resume_is_refused_while_the_daily_loss_holds_and_allowed_on_a_new_utc_day() -> None:
    risk = loss_engine(daily_loss_limit_pct=D(3), max_drawdown_pct=D(10))
    tick(risk, "BTC-USD", "70", NOW + SECOND)
    with pytest.raises(Conflict, match="daily_loss_limit"):
        risk.resume("operator", "looks fine", NOW + SECOND)
    assert risk.book.state.entries_allowed is False
    midnight = datetime(2026, 3, 3, tzinfo=UTC)
    before = tick(risk, "BTC-USD", "70", midnight - MICROSECOND)
    assert before.watch is None
    with pytest.raises(Conflict):
        risk.resume("operator", "looks fine", midnight - MICROSECOND)
    effects = tick(risk, "BTC-USD", "70", midnight)
    assert effects.watch is not None
    assert effects.watch.day == midnight.date() and effects.watch.day_start == D(9700)
    resumed = risk.resume("operator", "new day", midnight)
    assert resumed.state == TradingState(True, "new day", "operator", midnight)
    [audit] = resumed.audit
    assert (audit.action, audit.actor, audit.entries_allowed) == ("RESUME", "operator", True)
    assert risk.on_proposal(entry("ETH-USD"), midnight).decisions[0].outcome is (
        DecisionOutcome.APPROVED
    )


def test_a_drawdown_from_the_high_water_mark_pauses_entries_until_the_mark_is_reset() -> None:
    risk = loss_engine(daily_loss_limit_pct=D(50), max_drawdown_pct=D(10))
    assert tick(risk, "BTC-USD", "300", NOW + SECOND).watch is not None  # peak 12000
    assert tick(risk, "BTC-USD", "180.01", NOW + 2 * SECOND).state is None  # 10800.10
    effects = tick(risk, "BTC-USD", "180", NOW + 3 * SECOND)  # 10800: 10% below 12000
    assert effects.state is not None and effects.state.reason.startswith("max_drawdown")
    assert [a.actor for a in effects.audit] == ["risk"]
    assert [c.kinds for c in effects.cancels] == [(IntentKind.ENTRY,)]
    with pytest.raises(Conflict, match="reset_high_water_mark"):
        risk.resume("operator", "ok", NOW + 4 * SECOND)
    assert risk.book.watch.peak == D(12000)
    resumed = risk.resume("operator", "ok", NOW + 4 * SECOND, reset_peak=True)
    assert resumed.watch is not None and resumed.watch.peak == D(10800)
    assert risk.book.state.entries_allowed is True
    assert risk.on_proposal(entry("ETH-USD"), NOW + 4 * SECOND).decisions[0].reasons == ()


def test_resetting_the_high_water_mark_does_not_lift_the_daily_loss_limit() -> None:
    risk = loss_engine(daily_loss_limit_pct=D(3), max_drawdown_pct=D(3))
    tick(risk, "BTC-USD", "60", NOW + SECOND)
    with pytest.raises(Conflict, match="daily_loss_limit"):
        risk.resume("operator", "ok", NOW + SECOND, reset_peak=True)
    assert risk.book.watch.peak == D(10000)  # left as it was
    assert risk.book.state.entries_allowed is False


def test_resume_after_an_operator_pause_needs_no_reset() -> None:
    risk = engine()
    paused = risk.pause("alice", "news due", NOW)
    assert paused.state == TradingState(False, "news due", "alice", NOW)
    [audit] = paused.audit
    assert (audit.action, audit.actor, audit.reason) == ("PAUSE", "alice", "news due")
    assert [c.kinds for c in paused.cancels] == [(IntentKind.ENTRY,)]
    resumed = risk.resume("alice", "news out", NOW + SECOND)
    assert resumed.watch is None and risk.book.state.entries_allowed is True


# --- flatten -----------------------------------------------------------------------------


def orders(effects: Effects) -> dict[str, PlaceOrder]:
    return {issued.order.product_id: issued.order for issued in effects.intents}


def sold(risk: RiskEngine, order: PlaceOrder, base: str, price: str, at: datetime,
         status: OrderStatus = OrderStatus.FILLED) -> Effects:  # fmt: skip
    """``order`` fills ``base`` at ``price`` and then finishes."""
    if D(base) > 0:
        risk.on_fill(fill(order.product_id, Side.SELL, price, base, intent_id=order.intent_id), at)
    return risk.on_intent_finished(
        finished(order.intent_id, order.product_id, kind=order.kind, side=Side.SELL,
                 status=status, filled_base=base, at=at), at,
    )  # fmt: skip


def test_flatten_sells_everything_retries_what_is_left_and_finishes_when_all_is_flat() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "2", "100")
    hold(risk, "ETH-USD", "3", "50")
    hold(risk, "XRP-USD", "0.5", "1")  # dust
    sol = entry("SOL-USD", "100")
    assert risk.on_proposal(sol, NOW).intents
    t0 = NOW + SECOND

    job, effects = risk.flatten("f-1", None, "alice", "end of day", t0)

    assert set(job.products) == {"BTC-USD", "ETH-USD", "SOL-USD"}
    assert effects.state is not None and effects.state.name == "FLATTENING"
    assert effects.state.entries_allowed is False and effects.state.flatten_id == "f-1"
    [cancel] = effects.cancels
    assert cancel.kinds == FLATTEN_CANCELS and cancel.product_ids == ()
    [audit] = effects.audit
    assert (audit.action, audit.actor, audit.flatten_id) == ("FLATTEN", "alice", "f-1")
    exits = orders(effects)
    assert set(exits) == {"BTC-USD", "ETH-USD"}
    assert all(o.kind is IntentKind.FLATTEN and o.side is Side.SELL for o in exits.values())
    assert exits["BTC-USD"].base_size == D(2) and exits["ETH-USD"].base_size == D(3)
    assert exits["BTC-USD"].intent_id == "flatten:f-1:BTC-USD:0"
    assert {issued.flatten_id for issued in effects.intents} == {"f-1"}
    assert effects.jobs == {"f-1": job}
    assert job.products["BTC-USD"].status is ProgressStatus.EXITING
    assert job.products["SOL-USD"].status is ProgressStatus.WAITING

    # while it runs: no entries, no exits of its products, no resume
    assert risk.on_proposal(entry("UNI-USD"), t0).decisions[0].reasons == ("flatten_in_progress",)
    assert risk.on_proposal(exit_("ETH-USD"), t0).decisions[0].reasons == ("flatten_in_progress",)
    with pytest.raises(Conflict):
        risk.resume("alice", "changed my mind", t0)

    # BTC's exit sells half and is cancelled: another exit only after the backoff
    finished_btc = sold(risk, exits["BTC-USD"], "1", "99", t0, OrderStatus.CANCELLED)
    assert finished_btc.intents == [] and job.products["BTC-USD"].attempts == 1
    assert job.products["BTC-USD"].last_result.startswith("CANCELLED")
    assert risk.supervise(t0 + 2 * SECOND - MICROSECOND).intents == []
    retry = orders(risk.supervise(t0 + 2 * SECOND))
    assert set(retry) == {"BTC-USD"}
    assert retry["BTC-USD"].base_size == D(1)
    assert retry["BTC-USD"].intent_id == "flatten:f-1:BTC-USD:1"

    # ETH sells in full; SOL's cancelled entry still delivers a late partial fill
    assert sold(risk, exits["ETH-USD"], "3", "50", t0 + 2 * SECOND).jobs["f-1"] is job
    assert job.products["ETH-USD"].status is ProgressStatus.FLAT
    t3 = t0 + 3 * SECOND
    late = risk.on_fill(fill("SOL-USD", Side.BUY, "100", "0.5", intent_id=sol.proposal_id), t3)
    assert late.intents == []  # the entry is still open: wait for it
    sol_exit = orders(risk.on_intent_finished(finished(sol.proposal_id, "SOL-USD"), t3))
    assert sol_exit["SOL-USD"].base_size == D("0.5")
    assert sol_exit["SOL-USD"].intent_id == "flatten:f-1:SOL-USD:0"

    assert sold(risk, retry["BTC-USD"], "1", "98", t3).state is None
    assert not job.done
    t4 = t0 + 4 * SECOND
    done = sold(risk, sol_exit["SOL-USD"], "0.5", "100", t4)
    assert done.jobs["f-1"].to_json()["status"] == "DONE"
    assert job.finished_at == t4
    assert done.state is not None and done.state.flatten_id is None
    assert done.state.entries_allowed is False and done.state.name == "PAUSED"
    assert risk.book.flattening == frozenset()

    # afterwards: paused, not flattening; the operator may resume
    assert risk.on_proposal(entry("UNI-USD"), t4).decisions[0].reasons == ("trading_paused",)
    assert risk.supervise(t4 + HOUR).state is None
    risk.resume("alice", "tomorrow", t4 + HOUR)
    assert risk.book.state.entries_allowed is True


def test_retries_back_off_from_two_seconds_doubling_up_to_a_minute() -> None:
    job = FlattenJob("f-1", "alice", "why", NOW, {"BTC-USD": ProductProgress()})
    delays = []
    for _ in range(8):
        job.exit_sent("BTC-USD", NOW)
        next_at = job.products["BTC-USD"].next_attempt_at
        assert next_at is not None
        delays.append((next_at - NOW).total_seconds())
    assert delays == [2, 4, 8, 16, 32, 60, 60, 60]


def test_a_second_retry_waits_four_seconds() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "2", "100")
    _, effects = risk.flatten("f-1", None, "alice", "why", NOW)
    first = orders(effects)["BTC-USD"]
    sold(risk, first, "0", "100", NOW, OrderStatus.REJECTED)
    second = orders(risk.supervise(NOW + 2 * SECOND))["BTC-USD"]
    sold(risk, second, "0", "100", NOW + 2 * SECOND, OrderStatus.EXPIRED)
    assert risk.supervise(NOW + 6 * SECOND - MICROSECOND).intents == []
    third = orders(risk.supervise(NOW + 6 * SECOND))["BTC-USD"]
    assert third.intent_id == "flatten:f-1:BTC-USD:2"


def test_a_flatten_of_named_products_cancels_and_sells_only_those() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "2", "100")
    hold(risk, "ETH-USD", "3", "50")
    job, effects = risk.flatten("f-1", ["BTC-USD"], "alice", "btc only", NOW)
    assert set(job.products) == {"BTC-USD"}
    assert [c.product_ids for c in effects.cancels] == [("BTC-USD",)]
    assert set(orders(effects)) == {"BTC-USD"}
    assert risk.on_proposal(exit_("ETH-USD"), NOW).decisions[0].outcome is (
        DecisionOutcome.APPROVED
    )
    assert risk.on_proposal(entry("ETH-USD"), NOW).decisions[0].reasons == ("flatten_in_progress",)


def test_a_flatten_with_nothing_held_is_done_at_once_and_leaves_entries_paused() -> None:
    risk = engine()
    job, effects = risk.flatten("f-1", None, "alice", "nothing", NOW)
    assert job.done and job.finished_at == NOW and effects.intents == []
    assert effects.state is not None and effects.state.name == "PAUSED"
    assert risk.on_proposal(entry(), NOW).decisions[0].reasons == ("trading_paused",)


def test_flatten_while_a_flatten_runs_extends_it_without_selling_twice() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "2", "100")
    first, effects = risk.flatten("f-1", ["BTC-USD"], "alice", "one", NOW)
    assert set(orders(effects)) == {"BTC-USD"}
    hold(risk, "ETH-USD", "3", "50")
    second, more = risk.flatten("f-2", None, "bob", "all", NOW + SECOND)
    assert second is first and set(first.products) == {"BTC-USD", "ETH-USD"}
    assert set(orders(more)) == {"ETH-USD"}


def test_flatten_does_not_sell_again_what_a_working_exit_is_already_selling() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "2", "100")
    working = risk.on_proposal(exit_("BTC-USD"), NOW).intents[0].order
    job, effects = risk.flatten("f-1", None, "alice", "now", NOW)
    assert effects.intents == []  # the cancel goes out first; the exit is still selling 2
    assert job.products["BTC-USD"].status is ProgressStatus.WAITING
    # the exit is cancelled after selling half: the flatten sells the rest
    retry = orders(sold(risk, working, "1", "100", NOW + SECOND, OrderStatus.CANCELLED))
    assert retry["BTC-USD"].base_size == D(1) and retry["BTC-USD"].kind is IntentKind.FLATTEN


# --- what the shell persists ------------------------------------------------------------


def test_state_watch_and_jobs_round_trip_through_json() -> None:
    state = TradingState(False, "flatten: why", "alice", NOW, "f-1")
    assert TradingState.from_json(state.to_json()) == state
    assert TradingState.from_json(TradingState().to_json()) == TradingState()
    watch = EquityWatch(D("10500.25"), NOW.date(), D("10000.5"))
    assert EquityWatch.from_json(watch.to_json()) == watch
    assert EquityWatch.from_json(EquityWatch().to_json()) == EquityWatch()
    job = FlattenJob("f-1", "alice", "why", NOW, {"BTC-USD": ProductProgress()})
    job.exit_sent("BTC-USD", NOW)
    job.products["BTC-USD"].last_result = "CANCELLED"
    assert FlattenJob.from_json(job.to_json()) == job
    job.finished_at = NOW + HOUR
    assert FlattenJob.from_json(job.to_json()) == job
    assert job.to_json()["status"] == "DONE"


def test_only_what_must_be_stored_makes_effects_durable() -> None:
    assert not Effects().durable()
    risk = engine()
    assert not risk.on_fill(fill("BTC-USD", Side.BUY, "100", "1"), NOW).durable()
    assert risk.pause("alice", "why", NOW).durable()
    assert risk.on_proposal(entry(), NOW).durable()


def test_a_restored_running_flatten_keeps_its_products_out_of_exits() -> None:
    risk = engine()
    running = FlattenJob("f-1", "alice", "why", NOW, {"BTC-USD": ProductProgress()})
    over = FlattenJob("f-0", "bob", "old", NOW - HOUR, {"ETH-USD": ProductProgress()},
                      finished_at=NOW - HOUR)  # fmt: skip
    risk.restore(
        fills=[fill("BTC-USD", Side.BUY, "100", "1", trade_id="t-1"),
               fill("ETH-USD", Side.BUY, "100", "1", trade_id="t-2")],
        intents=[], entries=[], levels={}, jobs=[running, over],
    )  # fmt: skip
    assert set(risk.jobs) == {"f-1"}
    assert risk.book.flattening == frozenset({"BTC-USD"})
    assert risk.on_proposal(exit_("BTC-USD"), NOW).decisions[0].reasons == ("flatten_in_progress",)
    assert risk.on_proposal(exit_("ETH-USD"), NOW).decisions[0].reasons == ()
    assert Decimal(0) == risk.book.portfolio.fees()
