"""The paper venue: our orders matched against the live book, on a fake clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from services.execution.orders import CancelVenueOrder, LookupVenueOrder
from services.execution.paper import RESTARTED, PaperVenue
from services.execution.venues import (
    VenueAccepted,
    VenueDone,
    VenueFill,
    VenueLookup,
    VenueReport,
    WorkingOrder,
)
from shared.matching.types import FeeRates, Fill, OrderKind, OrderRequest, ProductRules
from shared.messages import BookLevel, BookUpdated, Liquidity, OrderStatus, TickUpdated
from shared.money import Rounding, Side, quantize

T0 = datetime(2026, 8, 3, 14, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
TICK = timedelta(microseconds=1)
RULES = ProductRules(
    product_id="BTC-USD", base_increment=D("0.00000001"), quote_increment=D("0.01"),
    price_increment=D("0.01"), base_min_size=D("0.00000001"), base_max_size=D(1000),
    quote_min_size=D(1), quote_max_size=D(10_000_000),
)  # fmt: skip
FEES = FeeRates(maker=D("0.006"), taker=D("0.012"))
BID = [("49999.99", "1")]
ASKS = [("50000.00", "0.01"), ("50001.00", "0.02"), ("50002.00", "1")]


def _venue(usd: str = "100000", btc: str = "0", **options: Any) -> PaperVenue:
    balances = {"USD": D(usd), "BTC": D(btc)}
    return PaperVenue({"BTC-USD": RULES}, fees=FEES, balances=balances, **options)


def _book(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> BookUpdated:
    return BookUpdated(
        product_id="BTC-USD",
        bids=tuple(BookLevel(price=D(p), size=D(s)) for p, s in bids),
        asks=tuple(BookLevel(price=D(p), size=D(s)) for p, s in asks), exchange_time=T0,
    )  # fmt: skip


def _tick(last: str, size: str, bid: str = "49999.97", ask: str = "50000.01") -> TickUpdated:
    return TickUpdated(
        product_id="BTC-USD", best_bid=D(bid), best_bid_size=D(1), best_ask=D(ask),
        best_ask_size=D(1), last_price=D(last), last_size=D(size), exchange_time=T0,
    )  # fmt: skip


def _market(
    coid: str, side: Side = Side.BUY, *, quote: str | None = None, base: str | None = None
) -> OrderRequest:
    return OrderRequest(coid, "BTC-USD", side, OrderKind.MARKET_IOC,
                        base_size=D(base) if base else None,
                        quote_size=D(quote) if quote else None)  # fmt: skip


def _post_only(coid: str, price: str, base: str, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(coid, "BTC-USD", side, OrderKind.LIMIT_GTC, base_size=D(base),
                        limit_price=D(price), post_only=True)  # fmt: skip


def _fills(reports: Sequence[VenueReport]) -> list[tuple[D, D]]:
    return [(r.price, r.size) for r in reports if isinstance(r, VenueFill)]


def _taker_fee(price: D, size: D) -> D:
    return quantize(price * size * FEES.taker, RULES.quote_increment, Rounding.HALF_EVEN)


async def test_a_market_buy_by_quote_walks_the_asks_level_by_level_and_pays_taker_fees() -> None:
    venue = _venue()
    asks = [("50000.00", "0.000075"), ("50010.00", "0.02"), ("50020.00", "5")]
    venue.on_book(_book(BID, asks), T0)
    reports = await venue.send(_market("c-1", quote="2000"), T0)
    # 2000 / 1.012 buys the first two levels whole and 0.01943891 of the third;
    # 3.75 * 0.012 = 0.045 rounds half-even to 0.04
    assert reports == [
        VenueAccepted("c-1", "paper-o1"),
        VenueFill("c-1", "paper-t1", D("50000.00"), D("0.000075"), D("0.04"), Liquidity.TAKER, T0),
        VenueFill("c-1", "paper-t2", D("50010.00"), D("0.02"), D("12.00"), Liquidity.TAKER, T0),
        VenueFill("c-1", "paper-t3", D("50020.00"), D("0.01943891"), D("11.67"), Liquidity.TAKER,
                  T0),
        VenueDone("c-1", OrderStatus.FILLED, ""),
    ]  # fmt: skip
    fills = [r for r in reports if isinstance(r, VenueFill)]
    assert all(fill.fee == _taker_fee(fill.price, fill.size) for fill in fills)
    value = sum((fill.price * fill.size for fill in fills), D(0))
    assert value + sum((fill.fee for fill in fills), D(0)) == D("1999.9942782")
    assert venue.available("USD") == D("98000.0057218")
    assert venue.available("BTC") == D("0.03951391")


@pytest.mark.parametrize(("base", "quote"), [("1", None), (None, "90000")])
async def test_a_taker_bigger_than_the_book_fills_only_what_the_levels_hold(
    base: str | None, quote: str | None
) -> None:
    venue = _venue()
    venue.on_book(_book(BID, ASKS[:2]), T0)
    reports = await venue.send(_market("c-1", base=base, quote=quote), T0)
    assert _fills(reports) == [(D("50000.00"), D("0.01")), (D("50001.00"), D("0.02"))]
    assert reports[-1] == VenueDone("c-1", OrderStatus.FILLED, "IOC_PARTIAL")
    assert venue.available("BTC") == D("0.03")
    assert venue.available("USD") == D(100_000) - D("1500.02") - D("6.00") - D("12.00")
    # the book is used up: nothing more to take until the next snapshot
    again = await venue.send(_market("c-2", base="0.001"), T0)
    assert again == [VenueDone("c-2", OrderStatus.REJECTED, "INVALID_NO_LIQUIDITY")]


async def test_our_own_fills_stay_missing_from_the_levels_for_the_depletion_time() -> None:
    venue = _venue(depletion=timedelta(seconds=10))
    venue.on_book(_book(BID, ASKS), T0)
    first = await venue.send(_market("c-1", base="0.01"), T0)
    second = await venue.send(_market("c-2", base="0.01"), T0)
    assert _fills(first) == [(D("50000.00"), D("0.01"))]
    assert _fills(second) == [(D("50001.00"), D("0.01"))]
    # the market's next snapshot has the same levels: what we took is still gone
    venue.on_book(_book(BID, ASKS), T0 + timedelta(seconds=1))
    third = await venue.send(_market("c-3", base="0.01"), T0 + timedelta(seconds=1))
    assert _fills(third) == [(D("50001.00"), D("0.01"))]
    asks = venue.account.books["BTC-USD"].asks
    venue.on_book(_book(BID, ASKS), T0 + timedelta(seconds=10) - TICK)
    assert asks(10) == [(D("50002.00"), D(1))]
    # at T0 + 10s what was taken at T0 is back; what was taken at T0 + 1s is not yet
    venue.on_book(_book(BID, ASKS), T0 + timedelta(seconds=10))
    assert asks(10) == [(D("50000.00"), D("0.01")), (D("50001.00"), D("0.01")),
                        (D("50002.00"), D(1))]  # fmt: skip
    fourth = await venue.send(_market("c-4", base="0.01"), T0 + timedelta(seconds=10))
    assert _fills(fourth) == [(D("50000.00"), D("0.01"))]
    venue.on_book(_book(BID, ASKS), T0 + timedelta(seconds=30))
    assert asks(10) == [(D(p), D(s)) for p, s in ASKS]


async def test_an_order_arrives_after_the_latency_and_meets_the_book_as_it_is_then() -> None:
    venue = _venue(latency=200 * MS)
    venue.on_book(_book(BID, ASKS), T0)
    assert await venue.send(_market("c-1", base="0.01"), T0) == []
    assert await venue.poll([], T0 + 199 * MS) == []
    venue.on_book(_book([("50099.00", "1")], [("50100.00", "1")]), T0 + 150 * MS)
    arrived = await venue.poll([], T0 + 200 * MS)
    assert arrived == [
        VenueAccepted("c-1", "paper-o1"),
        VenueFill("c-1", "paper-t1", D("50100.00"), D("0.01"), D("6.01"), Liquidity.TAKER,
                  T0 + 200 * MS),
        VenueDone("c-1", OrderStatus.FILLED, ""),
    ]  # fmt: skip
    assert await venue.poll([], T0 + 300 * MS) == []


async def test_a_cancel_before_the_order_arrives_stops_it_reaching_the_book() -> None:
    venue = _venue(latency=200 * MS)
    venue.on_book(_book(BID, ASKS), T0)
    assert await venue.send(_market("c-1", base="0.01"), T0) == []
    cancelled = await venue.send(CancelVenueOrder("c-1"), T0 + 100 * MS)
    assert cancelled == [VenueDone("c-1", OrderStatus.CANCELLED, "USER_REQUESTED")]
    assert await venue.poll([], T0 + timedelta(seconds=1)) == []
    assert venue.account.order_by_client_id("c-1") is None
    assert venue.available("USD") == D(100_000) and venue.available("BTC") == 0
    assert venue.account.books["BTC-USD"].asks(1) == [(D("50000.00"), D("0.01"))]


async def test_a_cancel_after_the_order_arrived_finds_it_at_the_venue() -> None:
    venue = _venue(latency=200 * MS)
    venue.on_book(_book(BID, ASKS), T0)
    assert await venue.send(_market("c-1", base="0.01"), T0) == []
    late = await venue.send(CancelVenueOrder("c-1"), T0 + 300 * MS)
    assert _fills(late) == [(D("50000.00"), D("0.01"))]
    assert late[-1] == VenueDone("c-1", OrderStatus.FILLED, "")


async def test_a_resting_order_is_cancelled_and_an_unknown_one_is_not_found() -> None:
    venue = _venue()
    venue.on_book(_book(BID, ASKS), T0)
    await venue.send(_post_only("c-1", "49999.99", "0.01"), T0)
    assert venue.available("USD") == D(100_000) - D("506.00")  # notional + taker fee, held
    cancelled = await venue.send(CancelVenueOrder("c-1"), T0 + MS)
    assert cancelled == [VenueDone("c-1", OrderStatus.CANCELLED, "USER_REQUESTED")]
    assert venue.available("USD") == D(100_000)
    assert await venue.send(CancelVenueOrder("c-1"), T0 + 2 * MS) == []  # it stays cancelled
    assert await venue.send(CancelVenueOrder("c-9"), T0) == [VenueLookup("c-9", False)]


async def test_a_resting_post_only_fills_as_maker_only_when_the_market_goes_through_it() -> None:
    venue = _venue()
    venue.on_book(_book(BID, ASKS), T0)
    rested = await venue.send(_post_only("c-1", "49999.99", "0.01"), T0)
    assert rested == [VenueAccepted("c-1", "paper-o1")]
    venue.on_tick(_tick("49999.99", "0.5"), T0 + 1 * MS)  # at the limit: our queue place unknown
    assert await venue.poll([], T0 + 1 * MS) == []
    venue.on_tick(_tick("49999.98", "0.004", ask="49999.99"), T0 + 2 * MS)
    # 0.004 * 49999.99 = 199.99996; * 0.006 = 1.19999976 -> 1.20
    assert await venue.poll([], T0 + 2 * MS) == [
        VenueFill("c-1", "paper-t1", D("49999.99"), D("0.004"), D("1.20"), Liquidity.MAKER,
                  T0 + 2 * MS),
    ]  # fmt: skip
    # the same trade, republished because the quote moved: not a second fill
    venue.on_tick(_tick("49999.98", "0.004", bid="49999.90", ask="49999.95"), T0 + 3 * MS)
    assert await venue.poll([], T0 + 3 * MS) == []
    # a snapshot whose asks are below our bid fills the rest
    venue.on_book(_book([("49999.90", "1")], [("49999.95", "2")]), T0 + 4 * MS)
    assert await venue.poll([], T0 + 4 * MS) == [
        VenueFill("c-1", "paper-t2", D("49999.99"), D("0.006"), D("1.80"), Liquidity.MAKER,
                  T0 + 4 * MS),
        VenueDone("c-1", OrderStatus.FILLED, ""),
    ]  # fmt: skip
    # 100000 - (199.99996 + 1.20) - (299.99994 + 1.80); the rest of the hold is released
    assert venue.available("USD") == D("99497.0001")
    assert venue.available("BTC") == D("0.01")


async def test_a_post_only_that_would_cross_is_refused() -> None:
    venue = _venue()
    venue.on_book(_book(BID, ASKS), T0)
    refused = await venue.send(_post_only("c-1", "50000.00", "0.01"), T0)
    assert refused == [VenueDone("c-1", OrderStatus.REJECTED, "INVALID_LIMIT_PRICE_POST_ONLY")]
    assert venue.available("USD") == D(100_000)


async def test_balances_are_enforced_and_restored_fills_set_them() -> None:
    venue = _venue(usd="1000")
    venue.on_book(_book(BID, ASKS), T0)
    too_big = await venue.send(_market("c-1", quote="1000.01"), T0)
    assert too_big == [VenueDone("c-1", OrderStatus.REJECTED, "INSUFFICIENT_FUND")]
    # 0.02 BTC costs 1000.00 + 0.01 * 50001 and fees: more than 1000 USD
    by_base = await venue.send(_market("c-2", base="0.02"), T0)
    assert by_base == [VenueDone("c-2", OrderStatus.REJECTED, "INSUFFICIENT_FUND")]
    no_btc = await venue.send(_market("c-3", Side.SELL, base="0.01"), T0)
    assert no_btc == [VenueDone("c-3", OrderStatus.REJECTED, "INSUFFICIENT_FUND")]
    bought = Fill("old-t1", "old-o1", "BTC-USD", Side.BUY, D("50000.00"), D("0.01"), D("6.00"),
                  Liquidity.TAKER, T0 - timedelta(days=1))  # fmt: skip
    venue.restore_fills([bought])
    assert (venue.available("USD"), venue.available("BTC")) == (D("494.00"), D("0.01"))
    over = await venue.send(_market("c-4", Side.SELL, base="0.01000001"), T0)
    assert over == [VenueDone("c-4", OrderStatus.REJECTED, "INSUFFICIENT_FUND")]
    sold = await venue.send(_market("c-5", Side.SELL, base="0.01"), T0)
    assert _fills(sold) == [(D("49999.99"), D("0.01"))]
    assert sold[-1] == VenueDone("c-5", OrderStatus.FILLED, "")
    # 494.00 + 499.9999 - 6.00 (499.9999 * 0.012 = 5.9999988)
    assert (venue.available("USD"), venue.available("BTC")) == (D("987.9999"), D(0))


async def test_lookups_and_a_restart_report_what_the_venue_knows() -> None:
    venue = _venue(latency=200 * MS)
    venue.on_book(_book(BID, ASKS), T0)
    await venue.send(_post_only("c-1", "49999.99", "0.01"), T0)
    assert await venue.send(LookupVenueOrder("c-1"), T0) == [VenueLookup("c-1", True)]  # in flight
    await venue.poll([], T0 + 200 * MS)
    assert await venue.send(LookupVenueOrder("c-1"), T0 + 300 * MS) == [VenueLookup("c-1", True)]
    assert await venue.send(LookupVenueOrder("c-9"), T0) == [VenueLookup("c-9", False)]
    working = [WorkingOrder("c-1", "BTC-USD", "paper-o1", T0),
               WorkingOrder("c-2", "BTC-USD", None, T0)]  # fmt: skip
    assert await _venue().reconcile(working, T0) == [
        VenueDone("c-1", OrderStatus.CANCELLED, RESTARTED),
        VenueDone("c-2", OrderStatus.CANCELLED, RESTARTED),
    ]
    assert RESTARTED == "paper_venue_restarted"


async def test_a_reconcile_while_running_reports_each_held_order_whole() -> None:
    """What execution asks when its record of an intent fell behind: every fill again
    (execution drops those it recorded), and the end; an order in flight reports later."""
    venue = _venue(latency=200 * MS)
    venue.on_book(_book(BID, ASKS), T0)
    await venue.send(_post_only("c-1", "49999.99", "0.01"), T0)
    await venue.poll([], T0 + 200 * MS)
    venue.on_tick(_tick("49999.98", "0.004", ask="49999.99"), T0 + 201 * MS)
    first = VenueFill("c-1", "paper-t1", D("49999.99"), D("0.004"), D("1.20"), Liquidity.MAKER,
                      T0 + 201 * MS)  # fmt: skip
    assert await venue.poll([], T0 + 201 * MS) == [first]  # reported once, then lost
    await venue.send(_post_only("c-2", "49999.00", "0.01"), T0 + 202 * MS)  # in flight
    working = [WorkingOrder("c-1", "BTC-USD", "paper-o1", T0),
               WorkingOrder("c-2", "BTC-USD", None, T0 + 202 * MS),
               WorkingOrder("c-3", "BTC-USD", None, T0)]  # fmt: skip
    assert await venue.reconcile(working, T0 + 203 * MS) == [
        VenueAccepted("c-1", "paper-o1"), first,
        VenueDone("c-3", OrderStatus.CANCELLED, RESTARTED),
    ]  # fmt: skip
    venue.on_book(_book([("49999.90", "1")], [("49999.95", "2")]), T0 + 204 * MS)
    rest = VenueFill("c-1", "paper-t2", D("49999.99"), D("0.006"), D("1.80"), Liquidity.MAKER,
                     T0 + 204 * MS)  # fmt: skip
    assert await venue.poll([], T0 + 204 * MS) == [rest, VenueDone("c-1", OrderStatus.FILLED, "")]
    assert await venue.reconcile(working[:1], T0 + 205 * MS) == [
        VenueAccepted("c-1", "paper-o1"), first, rest, VenueDone("c-1", OrderStatus.FILLED, ""),
    ]  # fmt: skip
    assert await venue.poll([], T0 + 500 * MS) == [VenueAccepted("c-2", "paper-o2")]


async def test_only_the_latest_ended_orders_are_remembered_and_a_resting_one_always() -> None:
    venue = _venue(retained_orders=2)
    venue.on_book(_book(BID, [("50000.00", "10")]), T0)
    await venue.send(_post_only("rest", "49000.00", "0.01"), T0)
    for n in range(1, 5):
        filled = await venue.send(_market(f"c-{n}", base="0.01"), T0 + n * MS)
        assert filled[-1] == VenueDone(f"c-{n}", OrderStatus.FILLED, "")
    assert [order.request.client_order_id for order in venue.account.orders()] == [
        "c-4", "c-3", "rest",
    ]  # fmt: skip
    for coid, known in [("c-1", False), ("c-2", False), ("c-3", True), ("rest", True)]:
        assert await venue.send(LookupVenueOrder(coid), T0 + 5 * MS) == [VenueLookup(coid, known)]
    assert await venue.send(CancelVenueOrder("c-1"), T0 + 5 * MS) == [VenueLookup("c-1", False)]
    # the resting order, ended now, is remembered as the latest; c-3 is forgotten
    cancelled = await venue.send(CancelVenueOrder("rest"), T0 + 6 * MS)
    assert cancelled == [VenueDone("rest", OrderStatus.CANCELLED, "USER_REQUESTED")]
    assert [order.request.client_order_id for order in venue.account.orders()] == ["c-4", "rest"]
    assert venue.available("BTC") == D("0.04") and venue.account.fills == deque()
    await venue.send(_post_only("open", "49000.00", "0.01"), T0 + 7 * MS)
    still_open = venue.account.order_by_client_id("open")
    assert still_open is not None
    with pytest.raises(ValueError, match="still open"):
        venue.account.forget(still_open.order_id)


async def _scenario(venue: PaperVenue) -> list[VenueReport]:
    """Every kind of event, in one fixed order; all the reports it produced."""
    reports: list[VenueReport] = []
    venue.on_book(_book(BID, ASKS), T0)
    reports += await venue.send(_market("c-1", quote="700"), T0)
    reports += await venue.send(_post_only("c-2", "49999.99", "0.01"), T0 + MS)
    reports += await venue.poll([], T0 + 100 * MS)
    venue.on_tick(_tick("49999.50", "0.003"), T0 + 150 * MS)
    reports += await venue.send(_market("c-3", base="0.015"), T0 + 160 * MS)
    reports += await venue.poll([], T0 + 300 * MS)
    venue.on_book(_book([("49990.00", "1")], [("49995.00", "1")]), T0 + 400 * MS)
    reports += await venue.send(CancelVenueOrder("c-2"), T0 + 500 * MS)
    reports += await venue.poll([], T0 + timedelta(seconds=1))
    return reports


async def test_the_same_inputs_give_the_same_reports() -> None:
    first = await _scenario(_venue(latency=50 * MS))
    second = await _scenario(_venue(latency=50 * MS))
    assert first == second
    trade_ids = [r.trade_id for r in first if isinstance(r, VenueFill)]
    assert trade_ids == [f"paper-t{n}" for n in range(1, len(trade_ids) + 1)]
    assert len(trade_ids) >= 4
    assert {r.liquidity for r in first if isinstance(r, VenueFill)} == {
        Liquidity.MAKER, Liquidity.TAKER,
    }  # fmt: skip
