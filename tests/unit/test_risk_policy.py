"""Entry gates, sizing and exits: every reason risk gives, and exact window boundaries."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.risk.engine import RiskEngine
from services.risk.ledger import DAY, HOUR, EntryRecord, EntryWindows
from services.risk.policy import ProductRules
from services.risk.state import EquityWatch
from shared.messages import (
    DecisionOutcome,
    IntentKind,
    LiquidityPreference,
    ProposalDecided,
    TradeProposed,
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
    rules,
    universe,
)

APPROVED, RESIZED, REJECTED = (
    DecisionOutcome.APPROVED,
    DecisionOutcome.RESIZED,
    DecisionOutcome.REJECTED,
)


def decide(risk: RiskEngine, proposal: TradeProposed, at: datetime = NOW) -> ProposalDecided:
    effects = risk.on_proposal(proposal, at)
    assert len(effects.decisions) == 1
    decision = effects.decisions[0]
    assert len(effects.intents) == (0 if decision.outcome is REJECTED else 1)
    return decision


def rejected(decision: ProposalDecided, *reasons: str) -> bool:
    return (
        decision.outcome is REJECTED
        and decision.approved_quote_size == 0
        and decision.reasons == reasons
    )


def resized(decision: ProposalDecided, size: str, *reasons: str) -> bool:
    return (
        decision.outcome is RESIZED
        and decision.approved_quote_size == D(size)
        and set(decision.reasons) == set(reasons)
        and len(decision.reasons) == len(reasons)
    )


# --- sliding windows ---------------------------------------------------------------------


def test_an_entry_counts_in_the_hour_until_just_before_an_hour_has_passed() -> None:
    windows = EntryWindows()
    windows.record(EntryRecord(NOW, "BTC-USD", D("250")))
    assert windows.count(NOW, HOUR) == 1
    assert windows.count(NOW + HOUR - MICROSECOND, HOUR) == 1
    assert windows.quote_total(NOW + HOUR - MICROSECOND, HOUR) == D("250")
    assert windows.count(NOW + HOUR, HOUR) == 0
    assert windows.quote_total(NOW + HOUR, HOUR) == 0
    assert windows.count(NOW - MICROSECOND, HOUR) == 0  # (now - length, now]


def test_an_entry_counts_in_the_day_until_just_before_a_day_has_passed() -> None:
    windows = EntryWindows()
    windows.record(EntryRecord(NOW, "BTC-USD", D("250")))
    assert windows.count(NOW + DAY - MICROSECOND, DAY) == 1
    assert windows.quote_total(NOW + DAY - MICROSECOND, DAY) == D("250")
    assert windows.count(NOW + DAY, DAY) == 0
    windows.prune(NOW + DAY - MICROSECOND)
    assert windows.last_entry("BTC-USD") == NOW
    windows.prune(NOW + DAY)
    assert windows.last_entry("BTC-USD") is None


def test_entries_are_recorded_in_time_order() -> None:
    windows = EntryWindows()
    windows.load([EntryRecord(NOW, "ETH-USD", D(1)), EntryRecord(NOW - HOUR, "BTC-USD", D(2))])
    assert windows.last_entry("BTC-USD") == NOW - HOUR
    with pytest.raises(ValueError):
        windows.record(EntryRecord(NOW - MICROSECOND, "BTC-USD", D(1)))


def test_max_trades_per_hour_lets_an_entry_in_exactly_an_hour_later() -> None:
    risk = engine(policy(max_trades_per_hour=1))
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED
    late = NOW + HOUR - MICROSECOND
    assert rejected(decide(risk, entry("BTC-USD", at=late), late), "max_trades_per_hour")
    assert decide(risk, entry("BTC-USD", at=NOW + HOUR), NOW + HOUR).outcome is APPROVED


def test_max_trades_per_day_lets_an_entry_in_exactly_a_day_later() -> None:
    risk = engine(policy(max_trades_per_day=2))
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED
    assert decide(risk, entry("SOL-USD"), NOW + HOUR).outcome is APPROVED
    late = NOW + DAY - MICROSECOND
    assert rejected(decide(risk, entry("BTC-USD"), late), "max_trades_per_day")
    # one of the two has left the window: one more fits, but only one
    assert decide(risk, entry("BTC-USD"), NOW + DAY).outcome is APPROVED
    assert rejected(decide(risk, entry("XRP-USD"), NOW + DAY), "max_trades_per_day")


def test_the_cooldown_allows_an_entry_exactly_the_cooldown_after_the_last() -> None:
    risk = engine(policy(new_trade_cooldown_s=300))
    assert decide(risk, entry("BTC-USD")).outcome is APPROVED
    cooldown = timedelta(seconds=300)
    early = NOW + cooldown - MICROSECOND
    assert rejected(decide(risk, entry("BTC-USD"), early), "cooldown")
    assert decide(risk, entry("ETH-USD"), early).outcome is APPROVED  # per product
    assert decide(risk, entry("BTC-USD"), NOW + cooldown).outcome is APPROVED
    assert rejected(decide(risk, entry("BTC-USD"), NOW + cooldown), "cooldown")


# --- entry gates -------------------------------------------------------------------------


def test_an_entry_within_every_limit_is_approved_as_a_maker_first_buy() -> None:
    risk = engine()
    proposal = entry("ETH-USD", "250.00", mid="2001.5", stop_loss="1950", take_profit="2100")
    effects = risk.on_proposal(proposal, NOW)
    [decision] = effects.decisions
    assert decision.outcome is APPROVED and decision.reasons == ()
    assert decision.approved_quote_size == decision.requested_quote_size == D("250.00")
    assert decision.proposal_id == proposal.proposal_id and decision.decided_at == NOW
    [issued] = effects.intents
    order = issued.order
    assert order.intent_id == proposal.proposal_id == order.proposal_id
    assert (order.kind, order.side, order.product_id) == (IntentKind.ENTRY, Side.BUY, "ETH-USD")
    assert order.quote_size == D("250.00") and order.base_size is None
    assert order.liquidity is LiquidityPreference.MAKER_FIRST
    assert order.reference_mid == D("2001.5") and order.issued_at == NOW
    assert (issued.stop_loss, issued.take_profit) == (D("1950"), D("2100"))
    assert risk.book.intents.reserved("ETH-USD") == D("250.00")


def test_paused_trading_rejects_entries() -> None:
    risk = engine()
    risk.pause("operator", "maintenance", NOW)
    assert rejected(decide(risk, entry()), "trading_paused")


def test_a_running_flatten_rejects_entries_as_flatten_in_progress() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "1", "100")
    risk.flatten("f-1", None, "operator", "leaving", NOW)
    assert rejected(decide(risk, entry("ETH-USD")), "flatten_in_progress")


@pytest.mark.parametrize(
    ("capital", "expected"),
    [("9700", ("daily_loss_limit",)), ("9699.99", ("daily_loss_limit",)), ("9700.01", ())],
)
def test_the_daily_loss_limit_rejects_entries_from_exactly_the_limit(
    capital: str, expected: tuple[str, ...]
) -> None:
    watch = EquityWatch(peak=D(10000), day=NOW.date(), day_start=D(10000))
    decision = decide(engine(capital=capital, watch=watch), entry())
    if expected:
        assert rejected(decision, *expected)
    else:
        assert decision.outcome is APPROVED


@pytest.mark.parametrize(("capital", "expected"), [("9000", ("max_drawdown",)), ("9000.01", ())])
def test_the_drawdown_limit_rejects_entries_from_exactly_the_limit(
    capital: str, expected: tuple[str, ...]
) -> None:
    watch = EquityWatch(peak=D(10000), day=NOW.date(), day_start=D(capital))
    decision = decide(engine(capital=capital, watch=watch), entry())
    if expected:
        assert rejected(decision, *expected)
    else:
        assert decision.outcome is APPROVED


@pytest.mark.parametrize(
    ("product_rules", "reason"),
    [
        (None, "product_not_in_universe"),
        (rules("BTC-USD", theme=None), "product_not_in_universe"),
        (rules("BTC-USD", enabled=False), "product_disabled"),
        (rules("BTC-USD", listed_by_venue=False), "product_metadata_missing"),
        (rules("BTC-USD", entries_allowed=False), "product_entries_halted"),
    ],
)
def test_product_gates(product_rules: ProductRules | None, reason: str) -> None:
    every = universe()
    del every["BTC-USD"]
    if product_rules is not None:
        every["BTC-USD"] = product_rules
    risk = engine(product_rules=every)
    assert rejected(decide(risk, entry("BTC-USD")), reason)


def test_max_trades_per_hour_rejects_the_next_entry() -> None:
    risk = engine(policy(max_trades_per_hour=2))
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED
    assert decide(risk, entry("SOL-USD")).outcome is APPROVED
    assert rejected(decide(risk, entry("BTC-USD")), "max_trades_per_hour")


def test_max_trades_per_day_rejects_the_next_entry() -> None:
    risk = engine(policy(max_trades_per_day=1))
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED
    assert rejected(decide(risk, entry("BTC-USD"), NOW + 2 * HOUR), "max_trades_per_day")


def test_max_open_trades_counts_real_positions_and_entries_in_flight_but_not_dust() -> None:
    risk = engine(policy(max_open_trades=2))
    hold(risk, "BTC-USD", "1", "100")
    hold(risk, "XRP-USD", "0.5", "1")  # worth 0.50: dust, not a trade
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED  # in flight: open
    assert rejected(decide(risk, entry("SOL-USD")), "max_open_trades")
    # adding to a product already open is not a new open trade
    assert decide(risk, entry("BTC-USD")).outcome is APPROVED
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED


def test_an_entry_that_ends_without_a_fill_frees_its_open_trade() -> None:
    risk = engine(policy(max_open_trades=1))
    first = entry("ETH-USD")
    assert decide(risk, first).outcome is APPROVED
    assert rejected(decide(risk, entry("SOL-USD")), "max_open_trades")
    risk.on_intent_finished(finished(first.proposal_id, "ETH-USD"), NOW)
    assert decide(risk, entry("SOL-USD")).outcome is APPROVED


def test_an_entry_must_be_a_buy() -> None:
    assert rejected(decide(engine(), entry(side=Side.SELL)), "unsupported_side")


def test_every_failing_gate_is_named() -> None:
    every = universe(rules("BTC-USD", enabled=False))
    risk = engine(policy(max_trades_per_hour=1), product_rules=every)
    assert decide(risk, entry("ETH-USD")).outcome is APPROVED
    risk.pause("operator", "lunch", NOW)
    decision = decide(risk, entry("BTC-USD", side=Side.SELL))
    assert rejected(
        decision, "unsupported_side", "trading_paused", "product_disabled", "max_trades_per_hour"
    )


# --- sizing -------------------------------------------------------------------------------


def test_the_asset_cap_resizes_to_the_room_left_of_equity() -> None:
    risk = engine(policy(default_asset_cap_pct=D(10)))
    assert resized(decide(risk, entry("ETH-USD", "1500")), "1000", "asset_cap")
    risk = engine(policy(default_asset_cap_pct=D(10), asset_caps_pct={"BTC-USD": D(5)}))
    assert resized(decide(risk, entry("BTC-USD", "1500")), "500", "asset_cap")


def test_the_asset_cap_counts_the_position_at_its_mark() -> None:
    risk = engine(policy(default_asset_cap_pct=D(10)))
    hold(risk, "ETH-USD", "2", "200")  # 400 of 10000
    assert resized(decide(risk, entry("ETH-USD", "1500")), "600", "asset_cap")
    risk = engine(policy(default_asset_cap_pct=D(10)))
    hold(risk, "ETH-USD", "2", "200")
    risk.book.portfolio.mark("ETH-USD", D(250))  # 500, and equity 10100
    assert resized(decide(risk, entry("ETH-USD", "1500")), "510", "asset_cap")


def test_the_asset_cap_counts_what_open_entries_may_still_buy() -> None:
    risk = engine(policy(default_asset_cap_pct=D(10)))
    first = entry("ETH-USD", "300")
    assert decide(risk, first).outcome is APPROVED
    assert resized(decide(risk, entry("ETH-USD", "1000")), "700", "asset_cap")
    # a partial fill turns part of a reservation into a position: same exposure
    risk = engine(policy(default_asset_cap_pct=D(10)))
    decide(risk, first)
    risk.on_fill(fill("ETH-USD", Side.BUY, "100", "1", intent_id=first.proposal_id), NOW)
    assert risk.book.intents.reserved("ETH-USD") == D(200)
    second = entry("ETH-USD", "1000")
    assert resized(decide(risk, second), "700", "asset_cap")
    # once the entries are finished nothing more is reserved: 100 is held
    risk.on_intent_finished(finished(first.proposal_id, "ETH-USD"), NOW)
    risk.on_intent_finished(finished(second.proposal_id, "ETH-USD"), NOW)
    assert resized(decide(risk, entry("ETH-USD", "1000")), "900", "asset_cap")


def test_the_theme_cap_counts_every_product_of_the_theme() -> None:
    caps = {"store_of_value": D(30), "smart_contracts": D(15), "payments": D(10), "defi": D(5)}
    risk = engine(policy(theme_caps_pct=caps))
    hold(risk, "ETH-USD", "10", "100")
    assert resized(decide(risk, entry("SOL-USD", "2000")), "500", "theme_cap")
    assert rejected(decide(risk, entry("SOL-USD", "2000")), "theme_cap", "below_min_trade")
    assert decide(risk, entry("BTC-USD", "2000")).outcome is APPROVED  # another theme


def test_a_theme_without_a_cap_admits_nothing() -> None:
    risk = engine(product_rules=universe(rules("DOGE-USD", theme="memes")))
    decision = decide(risk, entry("DOGE-USD", "100"))
    assert rejected(decision, "theme_cap", "below_min_trade")


def test_the_hourly_budget_resizes_and_frees_up_exactly_an_hour_later() -> None:
    risk = engine(policy(hourly_budget_usd=D(1000)))
    assert decide(risk, entry("ETH-USD", "700")).outcome is APPROVED
    late = NOW + HOUR - MICROSECOND
    assert resized(decide(risk, entry("BTC-USD", "500"), late), "300", "hourly_budget")
    assert decide(risk, entry("SOL-USD", "500"), NOW + HOUR).outcome is APPROVED


def test_the_daily_budget_resizes_and_frees_up_exactly_a_day_later() -> None:
    risk = engine(policy(daily_budget_usd=D(1000)))
    assert decide(risk, entry("ETH-USD", "700")).outcome is APPROVED
    late = NOW + DAY - MICROSECOND
    assert resized(decide(risk, entry("BTC-USD", "500"), late), "300", "daily_budget")
    assert decide(risk, entry("SOL-USD", "700"), NOW + DAY).outcome is APPROVED


def test_the_venue_maximum_resizes() -> None:
    risk = engine(product_rules=universe(rules("BTC-USD", quote_max_size=D(200))))
    assert resized(decide(risk, entry("BTC-USD", "500")), "200", "venue_max_size")


def test_every_binding_limit_is_named() -> None:
    risk = engine(
        policy(default_asset_cap_pct=D(10), hourly_budget_usd=D(800)),
        product_rules=universe(rules("BTC-USD", quote_max_size=D(200))),
    )
    decision = decide(risk, entry("BTC-USD", "5000"))
    assert resized(decision, "200", "asset_cap", "hourly_budget", "venue_max_size")


def test_an_entry_resized_below_the_minimum_trade_is_rejected() -> None:
    risk = engine(policy(default_asset_cap_pct=D(10)))
    hold(risk, "ETH-USD", "9.95", "100")  # 995 of 10000: 5 left
    assert rejected(decide(risk, entry("ETH-USD", "100")), "asset_cap", "below_min_trade")
    risk = engine(policy(default_asset_cap_pct=D(10)))
    hold(risk, "ETH-USD", "9.9", "100")  # 10 left: exactly the minimum
    assert resized(decide(risk, entry("ETH-USD", "100")), "10", "asset_cap")


def test_the_minimum_is_the_larger_of_ours_and_the_venues() -> None:
    risk = engine(product_rules=universe(rules("BTC-USD", quote_min_size=D(50))))
    assert rejected(decide(risk, entry("BTC-USD", "49.99")), "below_min_trade")
    assert decide(risk, entry("BTC-USD", "50")).outcome is APPROVED
    assert rejected(decide(engine(), entry("ETH-USD", "9.99")), "below_min_trade")


@pytest.mark.parametrize(
    ("capital", "increment", "expected"),
    [
        ("3333.33", "0.01", "333.33"),  # room 333.333
        ("1234.56789", "0.01", "123.45"),  # room 123.456789: floor, not 123.46
        ("1234.56789", "0.25", "123.25"),
        ("1239.9", "1", "123"),
    ],
)
def test_a_resized_entry_is_floored_to_the_quote_increment(
    capital: str, increment: str, expected: str
) -> None:
    risk = engine(
        policy(default_asset_cap_pct=D(10)),
        capital,
        product_rules=universe(rules("ETH-USD", quote_increment=D(increment))),
    )
    decision = decide(risk, entry("ETH-USD", "1000"))
    assert resized(decision, expected, "asset_cap")


def test_a_request_off_the_quote_increment_is_floored_onto_it() -> None:
    decision = decide(engine(), entry("ETH-USD", "100.129"))
    assert resized(decision, "100.12", "quote_increment")


# --- exits --------------------------------------------------------------------------------


def test_an_exit_sells_the_whole_position_floored_to_the_base_increment() -> None:
    risk = engine(product_rules=universe(rules("BTC-USD", base_increment=D("0.001"))))
    hold(risk, "BTC-USD", "1.23456", "100")
    proposal = exit_("BTC-USD", quote="123.45", mid="101")
    effects = risk.on_proposal(proposal, NOW)
    [decision] = effects.decisions
    assert decision.outcome is APPROVED and decision.reasons == ()
    assert decision.exit_base_size == D("1.234")
    assert decision.approved_quote_size == D("123.45")
    [issued] = effects.intents
    order = issued.order
    assert (order.kind, order.side, order.product_id) == (IntentKind.EXIT, Side.SELL, "BTC-USD")
    assert order.base_size == D("1.234") and order.quote_size is None
    assert order.liquidity is LiquidityPreference.TAKER
    assert order.intent_id == order.proposal_id == proposal.proposal_id
    assert order.reference_mid == D("101")


def test_an_exit_of_nothing_is_rejected() -> None:
    risk = engine()
    assert rejected(decide(risk, exit_("BTC-USD")), "nothing_held")
    risk.on_fill(fill("ETH-USD", Side.SELL, "100", "1"), NOW)  # short: nothing to sell
    assert rejected(decide(risk, exit_("ETH-USD")), "nothing_held")


def test_an_exit_of_dust_is_rejected() -> None:
    risk = engine(product_rules=universe(rules("ETH-USD", base_increment=D(1))))
    hold(risk, "BTC-USD", "0.0099", "100")  # worth 0.99
    assert rejected(decide(risk, exit_("BTC-USD")), "dust")
    hold(risk, "ETH-USD", "0.5", "100")  # worth 50, but less than one increment
    assert rejected(decide(risk, exit_("ETH-USD")), "dust")


def test_a_position_below_the_venues_minimum_order_is_dust() -> None:
    risk = engine(product_rules=universe(rules("SOL-USD", base_min_size=D("0.1"))))
    hold(risk, "SOL-USD", "0.09", "100")  # worth 9: above the dust threshold, unsellable
    assert rejected(decide(risk, exit_("SOL-USD")), "dust")
    hold(risk, "SOL-USD", "0.01", "100")  # now 0.1: the venue takes it
    assert decide(risk, exit_("SOL-USD")).outcome is APPROVED


def test_one_exit_at_a_time_per_product() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "1", "100")
    first = exit_("BTC-USD")
    assert decide(risk, first).outcome is APPROVED
    assert rejected(decide(risk, exit_("BTC-USD")), "exit_in_flight")
    risk.on_intent_finished(finished(first.proposal_id, kind=IntentKind.EXIT, side=Side.SELL), NOW)
    assert decide(risk, exit_("BTC-USD")).outcome is APPROVED


def test_an_exit_during_a_flatten_of_its_product_is_rejected() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "1", "100")
    risk.flatten("f-1", None, "operator", "leaving", NOW)
    assert rejected(decide(risk, exit_("BTC-USD")), "flatten_in_progress")


def test_an_exit_must_be_a_sell() -> None:
    risk = engine()
    hold(risk, "BTC-USD", "1", "100")
    assert rejected(decide(risk, exit_("BTC-USD", side=Side.BUY)), "unsupported_side")


def test_no_entry_limit_ever_blocks_an_exit() -> None:
    every = universe(
        rules("BTC-USD", enabled=False, entries_allowed=False, quote_max_size=D(1)),
        rules("ETH-USD", listed_by_venue=False),
    )
    del every["SOL-USD"]
    risk = engine(
        policy(
            max_trades_per_hour=1, max_trades_per_day=1, max_open_trades=1,
            hourly_budget_usd=D("0.01"), daily_budget_usd=D("0.01"),
            new_trade_cooldown_s=86400, default_asset_cap_pct=D(0),
            theme_caps_pct={"store_of_value": D(0)}, min_trade_usd=D(1_000_000),
        ),
        product_rules=every,
        watch=EquityWatch(peak=D(1_000_000), day=NOW.date(), day_start=D(1_000_000)),
    )  # fmt: skip
    for product in ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"):
        hold(risk, product, "3", "100")
    risk.book.windows.record(EntryRecord(NOW, "BTC-USD", D(1)))
    risk.pause("operator", "everything exhausted", NOW)
    assert rejected(
        decide(risk, entry("BTC-USD")), "trading_paused", "daily_loss_limit", "max_drawdown",
        "product_disabled", "max_trades_per_hour", "max_trades_per_day", "cooldown",
    )  # fmt: skip
    for product in ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"):
        decision = decide(risk, exit_(product))
        assert decision.outcome is APPROVED, decision.reasons
        assert decision.exit_base_size == Decimal("3")
