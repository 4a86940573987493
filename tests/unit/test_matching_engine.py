"""The matching engine and the book walk, one Coinbase rule at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from itertools import count

import pytest

from shared.coinbase.book import BookSide, L2Book
from shared.matching import (
    FeeRates,
    Liquidity,
    MatchingEngine,
    OrderKind,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    ProductRules,
    walk_book,
)
from shared.money import Side

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
BTC = ProductRules(
    product_id="BTC-USD",
    base_increment=D("0.001"),
    quote_increment=D("0.01"),
    price_increment=D("0.01"),
    base_min_size=D("0.002"),
    base_max_size=D("100"),
    quote_min_size=D("1"),
    quote_max_size=D("100000"),
)
ETH = ProductRules(
    product_id="ETH-USD",
    base_increment=D("0.0001"),
    quote_increment=D("0.01"),
    price_increment=D("0.01"),
    base_min_size=D("0.0001"),
    base_max_size=D("1000"),
    quote_min_size=D("0.01"),
    quote_max_size=D("100000"),
)
FEES = FeeRates(maker=D("0.004"), taker=D("0.006"))


def make_engine(fees: FeeRates = FEES) -> MatchingEngine:
    orders, trades = count(1), count(1)
    return MatchingEngine(
        {"BTC-USD": BTC, "ETH-USD": ETH},
        fees,
        order_ids=lambda: f"o-{next(orders)}",
        trade_ids=lambda: f"t-{next(trades)}",
    )


def make_book(bids=(), asks=(), product: str = "BTC-USD") -> L2Book:
    book = L2Book(product)
    levels = [(BookSide.BID, D(p), D(s)) for p, s in bids]
    book.apply_snapshot(levels + [(BookSide.OFFER, D(p), D(s)) for p, s in asks])
    return book


def market(side: Side, base=None, quote=None, product: str = "BTC-USD") -> OrderRequest:
    return OrderRequest(
        client_order_id="c",
        product_id=product,
        side=side,
        kind=OrderKind.MARKET_IOC,
        base_size=None if base is None else D(base),
        quote_size=None if quote is None else D(quote),
    )


def limit(side: Side, base, price, *, post_only=False, end_time=None, product="BTC-USD"):
    return OrderRequest(
        client_order_id="c",
        product_id=product,
        side=side,
        kind=OrderKind.LIMIT_GTD if end_time else OrderKind.LIMIT_GTC,
        base_size=D(base),
        limit_price=D(price),
        post_only=post_only,
        end_time=end_time,
    )


def executions(*pairs: tuple[str, str]) -> list[tuple[D, D]]:
    return [(D(price), D(size)) for price, size in pairs]


def later(seconds: int) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --- the book walk -------------------------------------------------------------------


def test_walk_takes_levels_in_order_and_part_of_the_last():
    asks = executions(("100", "1"), ("101", "2"), ("102", "5"))
    taken = walk_book(asks, base_size=D("4.5"), base_increment=D("0.001"))
    assert taken == executions(("100", "1"), ("101", "2"), ("102", "1.5"))


def test_walk_rounds_each_level_down_and_drops_empty_executions():
    asks = executions(("100", "0.0015"), ("100.5", "0.0004"), ("101", "0.0027"))
    taken = walk_book(asks, base_size=D("1"), base_increment=D("0.001"))
    assert taken == executions(("100", "0.001"), ("101", "0.002"))


def test_walk_by_quote_budget_counts_the_fee():
    asks = executions(("100", "1"), ("200", "10"))
    # 100 * 1 * 1.006 = 100.6 leaves 201.2, which buys 201.2 / 1.006 / 200 = 1 more.
    exact = walk_book(asks, quote_budget=D("301.8"), fee_rate=D("0.006"), base_increment=D("0.001"))
    assert exact == executions(("100", "1"), ("200", "1"))
    # One cent less: 1.000 more would cost 301.8; 0.999 more costs (100 + 199.8) * 1.006 = 301.5988.
    short = walk_book(
        asks, quote_budget=D("301.79"), fee_rate=D("0.006"), base_increment=D("0.001")
    )
    assert short == executions(("100", "1"), ("200", "0.999"))


def test_walk_stops_at_the_first_level_worse_than_the_limit():
    bids = executions(("100", "1"), ("99", "1"), ("98", "1"))
    taken = walk_book(
        bids, base_size=D("5"), base_increment=D("0.001"), limit_price=D("99"), side=Side.SELL
    )
    assert taken == executions(("100", "1"), ("99", "1"))
    asks = executions(("100", "1"), ("101", "1"))
    taken = walk_book(
        asks, base_size=D("5"), base_increment=D("0.001"), limit_price=D("100.5"), side=Side.BUY
    )
    assert taken == executions(("100", "1"))


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"base_size": D(1), "quote_budget": D(1)},
        {"base_size": D(1), "limit_price": D(100)},
        {"base_size": D(1), "fee_rate": D("-0.001")},
    ],
)
def test_walk_refuses_ambiguous_arguments(arguments):
    with pytest.raises(ValueError):
        walk_book(executions(("100", "1")), base_increment=D("0.001"), **arguments)


# --- market orders --------------------------------------------------------------------


def test_market_buy_takes_the_asks_as_taker_at_each_level_price():
    engine, book = make_engine(), make_book(bids=[("99", "5")], asks=[("100", "1"), ("101", "2")])
    order = engine.submit(market(Side.BUY, base="2.5"), book, NOW, consume=False)
    assert (order.order_id, order.created_time, order.status) == ("o-1", NOW, OrderStatus.FILLED)
    assert [(f.trade_id, f.price, f.size) for f in order.fills] == [
        ("t-1", D(100), D(1)),
        ("t-2", D(101), D("1.5")),
    ]
    # 100 * 0.006 = 0.60 and 151.5 * 0.006 = 0.909, rounded to the cent.
    assert [f.commission for f in order.fills] == [D("0.60"), D("0.91")]
    assert all(f.liquidity is Liquidity.TAKER and f.time == NOW for f in order.fills)
    assert (order.filled_size, order.filled_value, order.total_fees) == (2.5, 251.5, D("1.51"))
    assert order.done_reason == "" and order.last_fill_time == NOW


def test_commission_rounds_half_to_even():
    engine = make_engine(FeeRates(maker=D(0), taker=D("0.01")))
    book = make_book(asks=[("0.5", "1"), ("1.5", "1")], product="ETH-USD")
    order = engine.submit(market(Side.BUY, base="2", product="ETH-USD"), book, NOW, consume=False)
    # 0.005 rounds down to the even 0.00; 0.015 rounds up to the even 0.02.
    assert [f.commission for f in order.fills] == [D("0.00"), D("0.02")]


def test_market_sell_takes_the_bids_from_the_highest():
    engine, book = make_engine(), make_book(bids=[("100", "1"), ("99", "1")], asks=[("101", "9")])
    order = engine.submit(market(Side.SELL, base="1.5"), book, NOW, consume=False)
    assert [(f.price, f.size) for f in order.fills] == executions(("100", "1"), ("99", "0.5"))


def test_market_buy_by_quote_spends_at_most_the_quote_size_fees_included():
    engine, book = make_engine(), make_book(asks=[("100", "1"), ("200", "10")])
    order = engine.submit(market(Side.BUY, quote="301.80"), book, NOW, consume=False)
    assert (order.filled_size, order.filled_value) == (2, 300)
    assert [f.commission for f in order.fills] == [D("0.60"), D("1.20")]
    assert order.filled_value + order.total_fees == D("301.80")
    assert order.status is OrderStatus.FILLED and order.done_reason == ""


def test_quote_buy_gives_up_an_increment_when_rounded_fees_would_overspend():
    engine, book = make_engine(), make_book(asks=[("100.01", "100")], product="ETH-USD")
    order = engine.submit(
        market(Side.BUY, quote="0.85", product="ETH-USD"), book, NOW, consume=False
    )
    # 0.0084 costs 0.840084 + 0.00504 unrounded (fits) but 0.840084 + 0.01 rounded (does not).
    assert order.filled_size == D("0.0083")
    assert order.filled_value == D("0.830083") and order.total_fees == 0


def test_quote_buy_of_a_cheap_coin_finds_the_largest_fitting_size_in_few_steps():
    # A cent of rounded fee is over a hundred thousand increments of a $25 coin: the size
    # is found by bisection, not by giving up one increment at a time.
    avax = ProductRules(
        product_id="AVAX-USD", base_increment=D("0.00000001"), quote_increment=D("0.01"),
        price_increment=D("0.01"), base_min_size=D("0.00000001"), base_max_size=D("100000"),
        quote_min_size=D("1"), quote_max_size=D("100000"),
    )  # fmt: skip
    commissions = count()

    class Counting(MatchingEngine):
        def _commission(self, value: D, liquidity: Liquidity, rules: ProductRules) -> D:
            next(commissions)
            return super()._commission(value, liquidity, rules)

    ids = count(1)
    engine = Counting({"AVAX-USD": avax}, FEES, order_ids=lambda: f"o-{next(ids)}",
                      trade_ids=lambda: f"t-{next(ids)}")  # fmt: skip
    book = make_book(asks=[("25.03", "100")], product="AVAX-USD")
    order = engine.submit(market(Side.BUY, quote="100", product="AVAX-USD"), book, NOW,
                          consume=False)  # fmt: skip
    assert order.filled_size == D("3.97123451")  # what stepping an increment at a time gives
    assert order.filled_value + order.total_fees <= 100
    more = (order.filled_size + avax.base_increment) * D("25.03")
    assert more + (more * FEES.taker).quantize(D("0.01")) > 100  # one increment more overspends
    assert next(commissions) < 100


def test_market_remainder_is_cancelled_immediately():
    engine = make_engine()
    partial = engine.submit(
        market(Side.BUY, base="3"), make_book(asks=[("100", "1")]), NOW, consume=False
    )
    assert (partial.status, partial.done_reason, partial.filled_size) == (
        "FILLED",
        "IOC_PARTIAL",
        1,
    )
    emptied = engine.submit(
        market(Side.BUY, quote="500"), make_book(asks=[("100", "1")]), NOW, consume=False
    )
    assert (emptied.done_reason, emptied.filled_size) == ("IOC_PARTIAL", 1)
    # 1.00 cannot pay for even 0.001 at 2000 (2.00).
    none = engine.submit(
        market(Side.BUY, quote="1"), make_book(asks=[("2000", "1")]), NOW, consume=False
    )
    assert (none.status, none.done_reason, none.fills) == (
        OrderStatus.CANCELLED,
        "IOC_UNFILLED",
        [],
    )
    assert engine.open_orders() == []


def test_market_order_against_an_empty_side_is_refused_without_taking_an_id():
    engine, book = make_engine(), make_book(bids=[("100", "1")])
    with pytest.raises(OrderRejected) as refused:
        engine.submit(market(Side.BUY, base="1"), book, NOW, consume=False)
    assert refused.value.failure_reason == "INVALID_NO_LIQUIDITY"
    assert engine.submit(market(Side.SELL, base="1"), book, NOW, consume=False).order_id == "o-1"


def test_consume_takes_the_walked_liquidity_out_of_the_book():
    engine, book = make_engine(), make_book(asks=[("100", "1"), ("101", "2")])
    engine.submit(market(Side.BUY, base="1.5"), book, NOW, consume=True)
    assert book.asks(10) == executions(("101", "1.5"))
    second = engine.submit(market(Side.BUY, base="1"), book, NOW, consume=True)
    assert [(f.price, f.size) for f in second.fills] == executions(("101", "1"))
    assert book.asks(10) == executions(("101", "0.5"))


def test_without_consume_the_book_is_left_as_it_was():
    engine, book = make_engine(), make_book(asks=[("100", "1"), ("101", "2")])
    engine.submit(market(Side.BUY, base="1.5"), book, NOW, consume=False)
    again = engine.submit(market(Side.BUY, base="1.5"), book, NOW, consume=False)
    assert book.asks(10) == executions(("100", "1"), ("101", "2"))
    assert [(f.price, f.size) for f in again.fills] == executions(("100", "1"), ("101", "0.5"))


def test_submit_refuses_a_book_of_another_product():
    with pytest.raises(ValueError):
        make_engine().submit(
            market(Side.BUY, base="1"),
            make_book(asks=[("1", "1")], product="ETH-USD"),
            NOW,
            consume=False,
        )


# --- limit orders ---------------------------------------------------------------------


def test_post_only_that_would_cross_is_refused():
    engine, book = make_engine(), make_book(bids=[("99", "1")], asks=[("101", "1")])
    for request in (
        limit(Side.BUY, "1", "101", post_only=True),
        limit(Side.SELL, "1", "99", post_only=True),
    ):
        with pytest.raises(OrderRejected) as refused:
            engine.submit(request, book, NOW, consume=False)
        assert refused.value.failure_reason == "INVALID_LIMIT_PRICE_POST_ONLY"
    resting = engine.submit(
        limit(Side.BUY, "1", "100.99", post_only=True), book, NOW, consume=False
    )
    assert resting.status is OrderStatus.OPEN and resting.fills == []
    assert engine.open_orders() == [resting]


def test_post_only_rests_then_fills_as_maker_at_its_limit_on_a_print_through_it():
    engine, book = make_engine(), make_book(bids=[("99", "1")], asks=[("101", "1")])
    order = engine.submit(limit(Side.BUY, "1", "100", post_only=True), book, NOW, consume=False)
    fills = engine.on_trade("BTC-USD", D("99.99"), D("5"), later(1))
    assert [(f.price, f.size, f.liquidity, f.commission) for f in fills] == [
        (D(100), D(1), Liquidity.MAKER, D("0.40"))  # 100 * 0.004
    ]
    assert fills[0].order_id == order.order_id and fills[0].time == later(1)
    assert order.status is OrderStatus.FILLED and order.last_fill_time == later(1)
    assert (order.filled_value, order.total_fees) == (100, D("0.40"))
    assert engine.open_orders() == []


def test_a_print_at_the_limit_or_on_the_wrong_side_does_not_fill():
    engine, book = make_engine(), make_book()
    buy = engine.submit(limit(Side.BUY, "1", "100"), book, NOW, consume=False)
    sell = engine.submit(limit(Side.SELL, "1", "105"), book, NOW, consume=False)
    for price in ("100", "105", "102"):
        assert engine.on_trade("BTC-USD", D(price), D("10"), NOW) == []
    assert buy.status is sell.status is OrderStatus.OPEN
    assert engine.on_trade("BTC-USD", D("105.01"), D("0.3"), NOW)[0].price == 105
    assert sell.filled_size == D("0.3") and buy.filled_size == 0


def test_a_partial_maker_fill_stays_open_until_a_second_print_completes_it():
    engine = make_engine()
    order = engine.submit(limit(Side.BUY, "1", "100"), make_book(), NOW, consume=False)
    engine.on_trade("BTC-USD", D("99"), D("0.4"), later(1))
    assert (order.status, order.filled_size, order.remaining_base) == ("OPEN", D("0.4"), D("0.6"))
    assert (order.total_fees, order.last_fill_time) == (D("0.16"), later(1))
    fills = engine.on_trade("BTC-USD", D("98"), D("2"), later(2))
    assert [(f.price, f.size) for f in fills] == executions(("100", "0.6"))
    assert order.status is OrderStatus.FILLED and order.filled_size == 1
    assert (order.total_fees, order.last_fill_time) == (D("0.40"), later(2))


def test_best_limit_first_then_first_come_first_served_at_equal_prices():
    engine, book = make_engine(), make_book()
    first = engine.submit(limit(Side.BUY, "1", "100"), book, NOW, consume=False)
    second = engine.submit(limit(Side.BUY, "1", "100"), book, later(1), consume=False)
    best = engine.submit(limit(Side.BUY, "1", "101"), book, later(2), consume=False)
    fills = engine.on_trade("BTC-USD", D("99"), D("1.5"), later(3))
    assert [(f.order_id, f.price, f.size) for f in fills] == [
        (best.order_id, D(101), D(1)),
        (first.order_id, D(100), D("0.5")),
    ]
    assert second.filled_size == 0


def test_a_print_smaller_than_the_increment_fills_nothing():
    engine = make_engine()
    engine.submit(limit(Side.BUY, "1", "100"), make_book(), NOW, consume=False)
    assert engine.on_trade("BTC-USD", D("99"), D("0.0009"), NOW) == []


def test_a_crossing_limit_takes_as_taker_then_rests_the_rest():
    engine, book = make_engine(), make_book(asks=[("100", "1"), ("101", "1"), ("103", "5")])
    order = engine.submit(limit(Side.BUY, "3", "102"), book, NOW, consume=True)
    assert [(f.price, f.size, f.liquidity) for f in order.fills] == [
        (D(100), D(1), Liquidity.TAKER),
        (D(101), D(1), Liquidity.TAKER),
    ]
    assert order.status is OrderStatus.OPEN and engine.open_orders() == [order]
    assert book.asks(10) == executions(("103", "5"))
    engine.on_trade("BTC-USD", D("101.5"), D("4"), later(1))
    assert order.status is OrderStatus.FILLED and order.filled_size == 3
    assert [f.liquidity for f in order.fills][-1] is Liquidity.MAKER
    assert order.fills[-1].price == 102


def test_a_crossing_limit_filled_at_once_never_rests():
    engine = make_engine()
    order = engine.submit(
        limit(Side.SELL, "1", "99"), make_book(bids=[("100", "5")]), NOW, consume=False
    )
    assert order.status is OrderStatus.FILLED and order.fills[0].price == 100
    assert engine.open_orders() == []


# --- the book moving through resting orders ---------------------------------------------


def test_a_book_that_moves_through_a_resting_order_fills_it_at_its_limit():
    engine = make_engine()
    order = engine.submit(limit(Side.BUY, "2", "100"), make_book(), NOW, consume=False)
    moved = make_book(asks=[("99.5", "0.5"), ("99.9", "1"), ("100", "3")])
    fills = engine.on_book(moved, later(1))
    # Only the levels strictly below the limit count: 0.5 + 1.
    assert [(f.price, f.size, f.liquidity) for f in fills] == [(D(100), D("1.5"), Liquidity.MAKER)]
    assert order.status is OrderStatus.OPEN and order.filled_size == D("1.5")
    assert moved.asks(10) == executions(("99.5", "0.5"), ("99.9", "1"), ("100", "3"))


def test_orders_share_the_crossing_levels_of_one_book():
    engine, empty = make_engine(), make_book()
    high = engine.submit(limit(Side.BUY, "1", "102"), empty, NOW, consume=False)
    low = engine.submit(limit(Side.BUY, "1", "100"), empty, NOW, consume=False)
    late = engine.submit(limit(Side.BUY, "1", "100"), empty, later(1), consume=False)
    sell = engine.submit(limit(Side.SELL, "1", "110"), empty, NOW, consume=False)
    fills = engine.on_book(
        make_book(bids=[("110.5", "0.25")], asks=[("99", "1"), ("101", "1")]), later(2)
    )
    # The 102 buy takes the 101 level, leaving the 99 level to the older 100 buy.
    assert [(f.order_id, f.price, f.size) for f in fills] == [
        (high.order_id, D(102), D(1)),
        (low.order_id, D(100), D(1)),
        (sell.order_id, D(110), D("0.25")),
    ]
    assert late.filled_size == 0


# --- lifetime ---------------------------------------------------------------------------


def test_a_gtd_order_expires_at_its_end_time_and_no_longer_fills():
    engine, book = make_engine(), make_book()
    gtd = engine.submit(limit(Side.BUY, "1", "100", end_time=later(60)), book, NOW, consume=False)
    gtc = engine.submit(limit(Side.BUY, "1", "100"), book, NOW, consume=False)
    assert engine.expire(later(59)) == []
    fills = engine.on_trade("BTC-USD", D("99"), D("0.5"), later(60))
    assert [f.order_id for f in fills] == [gtc.order_id]
    assert engine.expire(later(60)) == [gtd]
    assert (gtd.status, gtd.done_reason) == (OrderStatus.EXPIRED, "END_TIME_REACHED")
    assert engine.open_orders() == [gtc] and engine.expire(later(3600)) == []


def test_cancel_once_then_again():
    engine = make_engine()
    order = engine.submit(limit(Side.SELL, "1", "100"), make_book(), NOW, consume=False)
    assert engine.cancel(order.order_id, NOW) is order
    assert (order.status, order.done_reason) == (OrderStatus.CANCELLED, "USER_REQUESTED")
    assert engine.open_orders() == [] and engine.on_trade("BTC-USD", D(101), D(1), NOW) == []
    with pytest.raises(OrderRejected) as twice:
        engine.cancel(order.order_id, NOW)
    assert twice.value.failure_reason == "UNKNOWN_CANCEL_ORDER"
    with pytest.raises(KeyError):
        engine.cancel("never-seen", NOW)
    with pytest.raises(KeyError):
        engine.order("never-seen")
    assert engine.order(order.order_id) is order


def test_a_filled_market_order_cannot_be_cancelled():
    engine = make_engine()
    order = engine.submit(
        market(Side.BUY, base="1"), make_book(asks=[("100", "5")]), NOW, consume=False
    )
    with pytest.raises(OrderRejected) as refused:
        engine.cancel(order.order_id, NOW)
    assert refused.value.failure_reason == "UNKNOWN_CANCEL_ORDER"


def test_new_fee_rates_apply_to_later_fills():
    engine = make_engine()
    engine.submit(limit(Side.BUY, "1", "100"), make_book(), NOW, consume=False)
    engine.set_fees(FeeRates(maker=D("0.001"), taker=D("0.002")))
    assert engine.on_trade("BTC-USD", D(99), D(1), NOW)[0].commission == D("0.10")


def test_open_orders_by_product_oldest_first():
    engine = make_engine()
    btc = engine.submit(limit(Side.BUY, "1", "100"), make_book(), NOW, consume=False)
    eth = engine.submit(
        limit(Side.BUY, "1", "100", product="ETH-USD"),
        make_book(product="ETH-USD"),
        NOW,
        consume=False,
    )
    assert engine.open_orders() == [btc, eth]
    assert engine.open_orders("ETH-USD") == [eth] and engine.open_orders("SOL-USD") == []


# --- validation -------------------------------------------------------------------------

UNSUPPORTED = "UNSUPPORTED_ORDER_CONFIGURATION"


def _request(**changes) -> OrderRequest:
    fields = {"client_order_id": "c", "product_id": "BTC-USD", "side": Side.BUY}
    fields |= {"kind": OrderKind.LIMIT_GTC, "base_size": D("1"), "limit_price": D("100")}
    return OrderRequest(**(fields | changes))


MARKET = {"kind": OrderKind.MARKET_IOC, "limit_price": None}
BY_QUOTE = MARKET | {"base_size": None}
BASE_SMALL, BASE_LARGE = (
    "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL",
    "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE",
)
QUOTE_SMALL = "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"
QUOTE_LARGE = "PREVIEW_INVALID_QUOTE_SIZE_TOO_LARGE"
GTD = {"kind": OrderKind.LIMIT_GTD}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"product_id": "XRP-USD"}, "INVALID_PRODUCT_ID"),
        (MARKET | {"quote_size": D("10")}, UNSUPPORTED),
        (MARKET | {"base_size": None}, UNSUPPORTED),
        (MARKET | {"post_only": True}, UNSUPPORTED),
        (MARKET | {"end_time": NOW + timedelta(hours=1)}, UNSUPPORTED),
        ({"kind": OrderKind.MARKET_IOC}, UNSUPPORTED),
        (MARKET | {"side": Side.SELL, "base_size": None, "quote_size": D("10")}, UNSUPPORTED),
        ({"limit_price": None}, UNSUPPORTED),
        ({"base_size": None}, UNSUPPORTED),
        ({"quote_size": D("10")}, UNSUPPORTED),
        ({"kind": OrderKind.LIMIT_GTD}, UNSUPPORTED),
        ({"end_time": NOW + timedelta(hours=1)}, UNSUPPORTED),
        ({"base_size": D("0")}, BASE_SMALL),
        ({"limit_price": D("-1")}, "INVALID_LIMIT_PRICE"),
        (BY_QUOTE | {"quote_size": D("0")}, QUOTE_SMALL),
        ({"base_size": D("1.0005")}, "INVALID_SIZE_PRECISION"),
        ({"limit_price": D("100.005")}, "INVALID_PRICE_PRECISION"),
        (BY_QUOTE | {"quote_size": D("10.005")}, "INVALID_SIZE_PRECISION"),
        ({"base_size": D("0.001")}, BASE_SMALL),
        ({"base_size": D("100.001")}, BASE_LARGE),
        (BY_QUOTE | {"quote_size": D("0.99")}, QUOTE_SMALL),
        (BY_QUOTE | {"quote_size": D("100000.01")}, QUOTE_LARGE),
        ({"base_size": D("0.002"), "limit_price": D("499.99")}, QUOTE_SMALL),
        (GTD | {"end_time": NOW}, "PREVIEW_INVALID_END_TIME"),
        (GTD | {"end_time": NOW.replace(tzinfo=None)}, "PREVIEW_INVALID_END_TIME"),
    ],
)  # fmt: skip
def test_each_validation_failure_has_its_reason(changes, reason):
    engine, book = make_engine(), make_book(bids=[("1", "1")], asks=[("1000", "1")])
    request = _request(**changes)
    with pytest.raises(OrderRejected) as refused:
        engine.validate(request, NOW)
    assert refused.value.failure_reason == reason
    with pytest.raises(OrderRejected):
        engine.submit(request, book, NOW, consume=True)
    assert engine.open_orders() == [] and book.asks(5) == executions(("1000", "1"))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"base_size": D("0.002"), "limit_price": D("500")},  # notional exactly the minimum
        {"kind": OrderKind.LIMIT_GTD, "end_time": NOW + timedelta(seconds=1)},
        BY_QUOTE | {"quote_size": D("1")},
        MARKET | {"side": Side.SELL},
    ],
)
def test_valid_requests_pass(changes):
    assert make_engine().validate(_request(**changes), NOW) is None
