"""exchange-sim's venue core: holds, settlement and events, with a scripted market."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.exchange_sim.catalog import CATALOG
from services.exchange_sim.market import MarketProfile, MarketStep, Print
from services.exchange_sim.venue import Venue
from shared.matching.types import FeeRates, OrderKind, OrderRejected, OrderRequest, OrderStatus
from shared.money import Side

D = Decimal
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
FEES = FeeRates(maker=D("0.004"), taker=D("0.006"))


class ScriptedMarket:
    """A market port whose book never moves and whose prints are queued by the test."""

    def __init__(self, profile: MarketProfile) -> None:
        self.profile = profile
        self.prints: list[Print] = []

    def advance(self, now: datetime) -> MarketStep:
        prints, self.prints = self.prints, []
        return MarketStep(
            time=now,
            bids=[(D("100.00"), D("1")), (D("99.00"), D("2"))],
            asks=[(D("101.00"), D("1")), (D("102.00"), D("2"))],
            prints=prints,
        )


@pytest.fixture
def market() -> ScriptedMarket:
    return ScriptedMarket(CATALOG["SOL-USD"].profile)


@pytest.fixture
def venue(market: ScriptedMarket) -> Venue:
    venue = Venue({"SOL-USD": CATALOG["SOL-USD"]}, {"SOL-USD": market}, fees=FEES,
                  balances={"USD": D("1000")})  # fmt: skip
    venue.step(T0)
    venue.take_events()
    return venue


def limit_buy(price: str, size: str, client_order_id: str = "c-1") -> OrderRequest:
    return OrderRequest(client_order_id, "SOL-USD", Side.BUY, OrderKind.LIMIT_GTC,
                        base_size=D(size), limit_price=D(price), post_only=True)  # fmt: skip


def test_a_resting_buy_holds_its_notional_with_the_taker_fee_and_a_cancel_frees_it(venue):
    order, created = venue.place(limit_buy("95.00", "2"), T0)
    assert created and order.status is OrderStatus.OPEN
    assert venue.ledger.held("USD") == D("191.14")  # 2 * 95 * 1.006 = 191.14
    assert venue.ledger.available("USD") == D("808.86")
    assert venue.cancel(order.order_id, T0) == ""
    assert venue.ledger.held("USD") == 0 and venue.ledger.available("USD") == D("1000")
    assert venue.cancel(order.order_id, T0) == "UNKNOWN_CANCEL_ORDER"


def test_a_maker_fill_settles_at_the_limit_and_releases_the_whole_hold(venue, market):
    order, _ = venue.place(limit_buy("95.00", "2"), T0)
    market.prints = [Print(T0 + timedelta(seconds=1), D("94.00"), D("0.5"), Side.SELL)]
    venue.step(T0 + timedelta(seconds=1))
    assert order.filled_size == D("0.5") and order.status is OrderStatus.OPEN
    market.prints = [Print(T0 + timedelta(seconds=2), D("93.00"), D("5"), Side.SELL)]
    venue.step(T0 + timedelta(seconds=2))
    assert order.status is OrderStatus.FILLED and order.filled_size == D("2")
    cost = D("190.00") + D("0.19") + D("0.57")  # 2 @ 95 plus maker fees of each fill
    assert venue.ledger.available("USD") == D("1000") - cost
    assert venue.ledger.available("SOL") == D("2")
    assert venue.ledger.held("USD") == 0
    events = venue.take_events()
    assert [o.order_id for o in events.orders] == [order.order_id]  # announced once
    assert [t.price for t in events.trades] == [D("94.00"), D("93.00")]


def test_a_repeated_client_order_id_returns_the_first_order_untouched(venue):
    first, created = venue.place(limit_buy("95.00", "1"), T0)
    again, created_again = venue.place(limit_buy("90.00", "3"), T0)
    assert created and not created_again
    assert again is first and venue.ledger.held("USD") == D("95.57")


def test_what_the_account_cannot_pay_is_refused_before_anything_happens(venue):
    with pytest.raises(OrderRejected) as caught:
        venue.place(limit_buy("95.00", "20"), T0)
    assert caught.value.failure_reason == "INSUFFICIENT_FUND"
    sell = OrderRequest("c-2", "SOL-USD", Side.SELL, OrderKind.MARKET_IOC, base_size=D("1"))
    with pytest.raises(OrderRejected) as caught:
        venue.place(sell, T0)
    assert caught.value.failure_reason == "INSUFFICIENT_FUND"
    assert venue.orders() == [] and venue.ledger.available("USD") == D("1000")


def test_a_market_buy_walks_the_book_and_the_book_change_is_announced(venue):
    request = OrderRequest("c-3", "SOL-USD", Side.BUY, OrderKind.MARKET_IOC, base_size=D("2"))
    order, _ = venue.place(request, T0)
    assert order.status is OrderStatus.FILLED
    assert [(f.price, f.size) for f in order.fills] == [(D("101.00"), D("1")),
                                                         (D("102.00"), D("1"))]  # fmt: skip
    paid = D("203.00") + D("0.61") + D("0.61")  # taker fee per fill, rounded to the cent
    assert venue.ledger.available("USD") == D("1000") - paid
    changes = venue.take_events().book_changes["SOL-USD"]
    assert {(c.price, c.new_quantity) for c in changes} == {(D("101.00"), 0), (D("102.00"), 1)}


def test_many_small_maker_fills_never_overdraw_or_release_more_than_they_cost(venue, market):
    order, _ = venue.place(limit_buy("95.00", "9.5"), T0)  # holds 2 cents short of 909
    held_at_start = venue.ledger.held("USD")
    moment = T0
    for _ in range(200):  # each fill's fee rounds: a per-fill hold release would drift
        moment += timedelta(milliseconds=10)
        market.prints = [Print(moment, D("94.99"), D("0.0133"), Side.SELL)]
        venue.step(moment)
        assert venue.ledger.available("USD") >= 0
        remaining_cost = (order.request.base_size - order.filled_size) * D("95.00")
        assert venue.ledger.held("USD") >= remaining_cost
    assert order.status is OrderStatus.OPEN and order.filled_size == D("2.66")
    spent = order.filled_value + order.total_fees
    assert venue.ledger.held("USD") == held_at_start - spent
    venue.cancel(order.order_id, moment)
    assert venue.ledger.held("USD") == 0
    assert venue.ledger.available("USD") == D("1000") - spent
