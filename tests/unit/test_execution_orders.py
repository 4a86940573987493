"""The order state machine of one intent, driven through every transition on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from services.execution.orders import (
    CancelVenueOrder,
    IntentExecution,
    LookupVenueOrder,
    RecordedOrder,
    Step,
    client_order_id,
)
from shared.config.models import ExecutionPolicy
from shared.matching.types import OrderKind, OrderRequest, ProductRules
from shared.messages import (
    IntentFinished,
    IntentKind,
    LiquidityPreference,
    OrderStatus,
    OrderUpdated,
    PlaceOrder,
    TradingMode,
)
from shared.money import Side

T0 = datetime(2026, 8, 3, 14, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
POLICY = ExecutionPolicy(maker_wait_ttl_s=20, pending_ttl_s=60, stale_ttl_s=300)
RULES = ProductRules(
    product_id="BTC-USD", base_increment=D("0.0001"), quote_increment=D("0.01"),
    price_increment=D("0.01"), base_min_size=D("0.0001"), base_max_size=D(100),
    quote_min_size=D(1), quote_max_size=D(1_000_000),
)  # fmt: skip


def _intent(
    kind: IntentKind = IntentKind.ENTRY, side: Side = Side.BUY, *, quote: str | None = "1000",
    base: str | None = None, liquidity: LiquidityPreference = LiquidityPreference.MAKER_FIRST,
) -> PlaceOrder:  # fmt: skip
    return PlaceOrder(
        intent_id=f"{kind.value.lower()}:1", kind=kind, product_id="BTC-USD", side=side,
        quote_size=D(quote) if quote else None, base_size=D(base) if base else None,
        reference_mid=D(50_000), liquidity=liquidity, issued_at=T0,
    )  # fmt: skip


def _machine(intent: PlaceOrder | None = None) -> IntentExecution:
    return IntentExecution(intent or _intent(), RULES, POLICY, TradingMode.PAPER, T0)


def _started(machine: IntentExecution) -> OrderRequest:
    step = machine.start(D("49999.99"), D("50000.01"), T0)
    [request] = step.commands
    assert isinstance(request, OrderRequest)
    return request


def _finished(step: Step) -> IntentFinished | None:
    return next((e for e in step.events if isinstance(e, IntentFinished)), None)


def _statuses(step: Step) -> list[OrderStatus]:
    return [e.status for e in step.events if isinstance(e, OrderUpdated)]


def test_client_order_ids_are_the_same_for_the_same_intent_and_attempt():
    assert client_order_id("entry:1", 0) == client_order_id("entry:1", 0)
    assert client_order_id("entry:1", 0) != client_order_id("entry:1", 1)
    assert client_order_id("entry:1", 0) != client_order_id("entry:2", 0)
    assert len(client_order_id("x" * 500, 12)) <= 64


def test_a_maker_first_buy_rests_post_only_at_the_best_bid_sized_from_its_quote():
    # 1000 USD with the 60 bps maker fee on top: 1000 / (49999.99 * 1.006), floored
    machine = _machine()
    step = machine.start(D("49999.99"), D("50000.01"), T0)
    [request] = step.commands
    assert request == OrderRequest(
        client_order_id=client_order_id("entry:1", 0), product_id="BTC-USD", side=Side.BUY,
        kind=OrderKind.LIMIT_GTC, base_size=D("0.0198"), limit_price=D("49999.99"),
        post_only=True,
    )  # fmt: skip
    assert _statuses(step) == [OrderStatus.PENDING]
    accepted = machine.on_accepted(request.client_order_id, "v-1", T0 + TICK)
    assert _statuses(accepted) == [OrderStatus.OPEN]
    assert accepted.events[0].venue_order_id == "v-1"


def test_a_maker_sell_rests_at_the_best_ask():
    machine = _machine(_intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5"))
    request = _started(machine)
    assert (request.side, request.limit_price, request.base_size) == (
        Side.SELL, D("50000.01"), D("0.5"),
    )  # fmt: skip


def test_a_full_maker_fill_finishes_the_intent_filled():
    machine = _machine()
    request = _started(machine)
    partial = machine.on_fill(request.client_order_id, D("49999.99"), D("0.0150"), D("4.5"), T0)
    assert _statuses(partial) == [OrderStatus.PARTIALLY_FILLED] and _finished(partial) is None
    full = machine.on_fill(request.client_order_id, D("49999.99"), D("0.0050"), D("1.5"), T0)
    finished = _finished(full)
    assert _statuses(full) == [OrderStatus.FILLED]
    assert finished is not None and finished.status is OrderStatus.FILLED
    assert (finished.filled_base, finished.filled_quote) == (D("0.0200"), D("999.99980"))
    assert machine.on_done(request.client_order_id, OrderStatus.FILLED, "", T0) == Step()


def test_the_maker_waits_exactly_its_ttl_then_is_cancelled_once():
    machine = _machine()
    request = _started(machine)
    machine.on_accepted(request.client_order_id, "v-1", T0)
    assert machine.on_timer(T0 + timedelta(seconds=20) - TICK) == Step()
    wait_over = machine.on_timer(T0 + timedelta(seconds=20))
    assert wait_over.commands == [CancelVenueOrder(request.client_order_id)]
    assert machine.on_timer(T0 + timedelta(seconds=25)) == Step()


def test_after_the_maker_wait_the_rest_of_a_buy_goes_taker_for_its_quote_left():
    machine = _machine()
    maker = _started(machine)
    machine.on_accepted(maker.client_order_id, "v-1", T0)
    machine.on_fill(maker.client_order_id, D("49999.99"), D("0.0100"), D("3.00"), T0)
    machine.on_timer(T0 + timedelta(seconds=20))
    cancelled = machine.on_done(maker.client_order_id, OrderStatus.CANCELLED, "", T0)
    [taker] = cancelled.commands
    assert isinstance(taker, OrderRequest)
    # 1000 - 499.9999 filled - 3.00 fees = 497.0001, floored to the cent
    assert (taker.kind, taker.quote_size, taker.client_order_id) == (
        OrderKind.MARKET_IOC, D("497.00"), client_order_id("entry:1", 1),
    )  # fmt: skip
    assert _statuses(cancelled) == [OrderStatus.CANCELLED, OrderStatus.PENDING]
    machine.on_fill(taker.client_order_id, D("50010"), D("0.0099"), D("2.97"), T0)
    done = machine.on_done(taker.client_order_id, OrderStatus.FILLED, "", T0)
    finished = _finished(done)
    assert finished is not None and finished.status is OrderStatus.FILLED
    assert finished.filled_base == D("0.0199")


def test_a_post_only_order_that_would_cross_goes_taker_at_once():
    machine = _machine(_intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5"))
    maker = _started(machine)
    refused = machine.on_done(maker.client_order_id, OrderStatus.REJECTED,
                              "INVALID_LIMIT_PRICE_POST_ONLY", T0)  # fmt: skip
    [taker] = refused.commands
    assert isinstance(taker, OrderRequest)
    assert (taker.kind, taker.base_size) == (OrderKind.MARKET_IOC, D("0.5"))


def test_a_taker_intent_sends_a_market_ioc_and_has_no_maker_wait():
    machine = _machine(_intent(IntentKind.FLATTEN, Side.SELL, quote=None, base="0.25",
                               liquidity=LiquidityPreference.TAKER))  # fmt: skip
    taker = _started(machine)
    assert (taker.kind, taker.base_size, taker.post_only) == (
        OrderKind.MARKET_IOC,
        D("0.25"),
        False,
    )
    machine.on_accepted(taker.client_order_id, "v-9", T0)
    assert machine.on_timer(T0 + timedelta(seconds=59)) == Step()
    machine.on_fill(taker.client_order_id, D("49990"), D("0.25"), D("15"), T0)
    assert machine.finished is not None and machine.finished.status is OrderStatus.FILLED


def test_an_unconfirmed_order_is_looked_up_at_the_pending_ttl_and_again_while_unanswered():
    machine = _machine(_intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5",
                               liquidity=LiquidityPreference.TAKER))  # fmt: skip
    taker = _started(machine)
    assert machine.on_timer(T0 + timedelta(seconds=60) - TICK) == Step()
    due = machine.on_timer(T0 + timedelta(seconds=60))
    assert due.commands == [LookupVenueOrder(taker.client_order_id)]
    assert machine.on_timer(T0 + timedelta(seconds=120) - TICK) == Step()
    again = machine.on_timer(T0 + timedelta(seconds=120))  # the venue never answered
    assert again.commands == [LookupVenueOrder(taker.client_order_id)]
    machine.on_accepted(taker.client_order_id, "v-1", T0 + timedelta(seconds=121))
    assert machine.on_timer(T0 + timedelta(seconds=180)) == Step()


def test_a_lookup_that_finds_nothing_means_the_order_was_never_placed():
    machine = _machine(_intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5",
                               liquidity=LiquidityPreference.TAKER))  # fmt: skip
    taker = _started(machine)
    assert machine.on_lookup(taker.client_order_id, True, T0) == Step()
    gone = machine.on_lookup(taker.client_order_id, False, T0)
    finished = _finished(gone)
    assert finished is not None
    assert (finished.status, finished.reason) == (OrderStatus.REJECTED, "not_found_at_venue")


def test_anything_still_working_at_the_stale_ttl_is_cancelled_and_the_intent_expires():
    machine = _machine(_intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5"))
    maker = _started(machine)
    machine.on_accepted(maker.client_order_id, "v-1", T0)
    machine.on_timer(T0 + timedelta(seconds=20))  # maker wait: cancel sent, no answer yet
    assert machine.on_timer(T0 + timedelta(seconds=80) - TICK) == Step()
    again = machine.on_timer(T0 + timedelta(seconds=80))  # unanswered for the pending TTL
    assert again.commands == [CancelVenueOrder(maker.client_order_id)]
    assert machine.on_timer(T0 + timedelta(seconds=140) - TICK) == Step()
    stale = machine.on_timer(T0 + timedelta(seconds=300))
    assert stale.commands == []  # the cancel is already out; the stale TTL does not double it
    machine.on_fill(maker.client_order_id, D("50000.01"), D("0.1"), D("3"), T0)
    done = machine.on_done(maker.client_order_id, OrderStatus.CANCELLED, "", T0)
    finished = _finished(done)
    assert finished is not None and done.commands == []  # a stale intent does not go taker
    assert (finished.status, finished.reason, finished.filled_base) == (
        OrderStatus.EXPIRED, "stale", D("0.1"),
    )  # fmt: skip


def test_a_cancelled_intent_cancels_its_order_and_finishes_when_the_venue_confirms():
    machine = _machine()
    maker = _started(machine)
    asked = machine.cancel("paused: news", T0)
    assert asked.commands == [CancelVenueOrder(maker.client_order_id)]
    assert machine.cancel("paused: news", T0).commands == []
    done = machine.on_done(maker.client_order_id, OrderStatus.CANCELLED, "", T0)
    finished = _finished(done)
    assert finished is not None
    assert (finished.status, finished.reason) == (OrderStatus.CANCELLED, "paused: news")


def test_a_venue_refusal_ends_the_intent_with_its_reason():
    machine = _machine(_intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5",
                               liquidity=LiquidityPreference.TAKER))  # fmt: skip
    taker = _started(machine)
    refused = machine.on_done(taker.client_order_id, OrderStatus.REJECTED, "INSUFFICIENT_FUND", T0)
    finished = _finished(refused)
    assert finished is not None
    assert (finished.status, finished.reason) == (OrderStatus.REJECTED, "INSUFFICIENT_FUND")
    assert machine.on_timer(T0 + timedelta(hours=1)) == Step()


@pytest.mark.parametrize(("filled", "status"), [("0.4999", OrderStatus.FILLED),
                                                ("0", OrderStatus.EXPIRED)])  # fmt: skip
def test_a_rest_below_the_venue_minimum_is_not_sent(filled: str, status: OrderStatus):
    rules_min = ProductRules(**{**RULES.__dict__, "base_min_size": D("0.01")})
    intent = _intent(IntentKind.EXIT, Side.SELL, quote=None, base="0.5")
    machine = IntentExecution(intent, rules_min, POLICY, TradingMode.PAPER, T0)
    maker = _started(machine)
    if D(filled):
        machine.on_fill(maker.client_order_id, D("50000.01"), D(filled), D(0), T0)
        machine.on_timer(T0 + timedelta(seconds=20))
        done = machine.on_done(maker.client_order_id, OrderStatus.CANCELLED, "", T0)
    else:
        done = machine.on_done(maker.client_order_id, OrderStatus.EXPIRED, "", T0)
    finished = _finished(done)
    assert done.commands == [] and finished is not None and finished.status is status


REPOST = ExecutionPolicy(maker_wait_ttl_s=20, pending_ttl_s=60, stale_ttl_s=300,
                         after_maker_wait="repost", max_reposts=2)  # fmt: skip


def _waited_out(machine: IntentExecution, order: OrderRequest, bid: str, at: datetime) -> Step:
    """The maker wait of ``order`` (sent at ``at``) runs out; the venue confirms the cancel."""
    assert machine.on_timer(at + timedelta(seconds=20) - TICK) == Step()
    assert machine.on_timer(at + timedelta(seconds=20)).commands == [
        CancelVenueOrder(order.client_order_id)
    ]
    machine.update_quote(D(bid), D(bid) + D("0.02"))
    return machine.on_done(order.client_order_id, OrderStatus.CANCELLED, "",
                           at + timedelta(seconds=21))  # fmt: skip


def test_with_repost_the_rest_rests_again_at_the_new_best_bid_then_goes_taker() -> None:
    machine = IntentExecution(_intent(), RULES, REPOST, TradingMode.PAPER, T0)
    maker = _started(machine)
    machine.on_accepted(maker.client_order_id, "v-1", T0)
    machine.on_fill(maker.client_order_id, D("49999.99"), D("0.0100"), D("3.00"), T0)
    first = _waited_out(machine, maker, "49990.00", T0)
    [repost] = first.commands
    # 1000 - 499.9999 - 3.00 = 497.0001 left; / (49990 * 1.006) = 0.00988... -> 0.0098
    assert repost == OrderRequest(
        client_order_id=client_order_id("entry:1", 1), product_id="BTC-USD", side=Side.BUY,
        kind=OrderKind.LIMIT_GTC, base_size=D("0.0098"), limit_price=D("49990.00"),
        post_only=True,
    )  # fmt: skip
    assert _statuses(first) == [OrderStatus.CANCELLED, OrderStatus.PENDING]
    second = _waited_out(machine, repost, "49980.00", T0 + timedelta(seconds=21))
    [again] = second.commands
    assert isinstance(again, OrderRequest)
    assert (again.client_order_id, again.limit_price, again.post_only) == (
        client_order_id("entry:1", 2), D("49980.00"), True,
    )  # fmt: skip
    # max_reposts (2) re-posts made: the rest goes taker for the quote left
    third = _waited_out(machine, again, "49970.00", T0 + timedelta(seconds=42))
    [taker] = third.commands
    assert isinstance(taker, OrderRequest)
    assert (taker.kind, taker.quote_size, taker.client_order_id, taker.post_only) == (
        OrderKind.MARKET_IOC, D("497.00"), client_order_id("entry:1", 3), False,
    )  # fmt: skip
    assert machine.filled_base == D("0.0100") and machine.finished is None


def test_with_repost_a_post_only_refusal_still_goes_taker_at_once() -> None:
    machine = IntentExecution(_intent(), RULES, REPOST, TradingMode.PAPER, T0)
    maker = _started(machine)
    refused = machine.on_done(maker.client_order_id, OrderStatus.REJECTED,
                              "INVALID_LIMIT_PRICE_POST_ONLY", T0)  # fmt: skip
    [taker] = refused.commands
    assert isinstance(taker, OrderRequest)
    assert (taker.kind, taker.quote_size, taker.client_order_id) == (
        OrderKind.MARKET_IOC, D("1000.00"), client_order_id("entry:1", 1),
    )  # fmt: skip


def _recorded_maker(filled: str = "0.0050") -> RecordedOrder:
    request = OrderRequest(
        client_order_id=client_order_id("entry:1", 0), product_id="BTC-USD", side=Side.BUY,
        kind=OrderKind.LIMIT_GTC, base_size=D("0.0198"), limit_price=D("49999.99"),
        post_only=True,
    )  # fmt: skip
    return RecordedOrder(request, OrderStatus.PARTIALLY_FILLED, "v-1", D(filled),
                         D(filled) * D("49999.99"), D("1.50"))  # fmt: skip


def test_a_resumed_maker_waits_its_full_time_again_from_the_resume() -> None:
    resumed_at = T0 + timedelta(seconds=100)
    recorded = _recorded_maker()
    machine = IntentExecution.resume(
        _intent(), RULES, POLICY, TradingMode.PAPER, started_at=T0, orders=[recorded],
        cancel_reason="", now=resumed_at,
    )  # fmt: skip
    assert machine.filled_base == D("0.0050") and machine.fees == D("1.50")
    assert machine.working_order is not None
    assert machine.on_timer(resumed_at + timedelta(seconds=20) - TICK) == Step()
    due = machine.on_timer(resumed_at + timedelta(seconds=20))
    assert due.commands == [CancelVenueOrder(recorded.request.client_order_id)]
    cancelled = machine.on_done(recorded.request.client_order_id, OrderStatus.CANCELLED, "",
                                resumed_at + timedelta(seconds=21))  # fmt: skip
    [taker] = cancelled.commands
    assert isinstance(taker, OrderRequest)
    # 1000 - 0.0050 * 49999.99 - 1.50 = 748.50005 -> 748.50
    assert (taker.kind, taker.quote_size, taker.client_order_id) == (
        OrderKind.MARKET_IOC, D("748.50"), client_order_id("entry:1", 1),
    )  # fmt: skip


def test_a_resumed_stale_intent_expires_when_its_cancel_is_confirmed() -> None:
    recorded = _recorded_maker()
    machine = IntentExecution.resume(
        _intent(), RULES, POLICY, TradingMode.PAPER, started_at=T0, orders=[recorded],
        cancel_reason="stale", now=T0 + timedelta(seconds=301),
    )  # fmt: skip
    done = machine.on_done(recorded.request.client_order_id, OrderStatus.CANCELLED, "",
                           T0 + timedelta(seconds=302))  # fmt: skip
    finished = _finished(done)
    assert done.commands == [] and finished is not None
    assert (finished.status, finished.reason, finished.filled_base) == (
        OrderStatus.EXPIRED, "stale", D("0.0050"),
    )  # fmt: skip
