"""Invariants of the book walk and of maker fills, over generated books and prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

from hypothesis import given
from hypothesis import strategies as st

from shared.coinbase.book import BookSide, L2Book
from shared.matching import (
    FeeRates,
    Liquidity,
    MatchingEngine,
    OrderKind,
    OrderRequest,
    OrderStatus,
    ProductRules,
    walk_book,
)
from shared.money import Rounding, Side, quantize

INCREMENT = Decimal("0.001")
NOW = datetime(2024, 5, 6, tzinfo=UTC)
RULES = ProductRules(
    product_id="BTC-USD",
    base_increment=INCREMENT,
    quote_increment=Decimal("0.01"),
    price_increment=Decimal("0.01"),
    base_min_size=INCREMENT,
    base_max_size=Decimal("1000"),
    quote_min_size=Decimal("0.01"),
    quote_max_size=Decimal("10000000"),
)

prices = st.integers(1, 2_000_000).map(lambda cents: Decimal(cents) / 100)
# Sizes in 0.0001 steps: many are not whole multiples of the 0.001 increment.
level_sizes = st.integers(1, 50_000).map(lambda steps: Decimal(steps) / 10_000)
order_sizes = st.integers(1, 20_000).map(lambda steps: steps * INCREMENT)
fee_rates = st.integers(0, 100).map(lambda bps: Decimal(bps) / 10_000)
budgets = st.integers(1, 10_000_000).map(lambda cents: Decimal(cents) / 100)


@st.composite
def ask_levels(draw: st.DrawFn) -> list[tuple[Decimal, Decimal]]:
    """Distinct ask prices, lowest first, with their sizes."""
    level_prices = sorted(draw(st.sets(prices, max_size=12)))
    return [(price, draw(level_sizes)) for price in level_prices]


def _check_shape(taken: list[tuple[Decimal, Decimal]], levels: list[tuple[Decimal, Decimal]]):
    depth = dict(levels)
    assert len({price for price, _ in taken}) == len(taken)
    for price, size in taken:
        assert 0 < size <= depth[price]
        assert quantize(size, INCREMENT, Rounding.FLOOR) == size
    assert [price for price, _ in taken] == sorted(price for price, _ in taken)
    assert sum(size for _, size in taken) <= sum(depth.values())


def _first_level_left(taken, levels) -> int | None:
    """Index of the first level the walk did not take in full (rounded down), if any."""
    taken_at = dict(taken)
    for index, (price, size) in enumerate(levels):
        if taken_at.get(price, Decimal(0)) < quantize(size, INCREMENT, Rounding.FLOOR):
            return index
    return None


@given(levels=ask_levels(), base_size=order_sizes)
def test_a_walk_by_base_size_stays_within_depth_and_size_and_stops_only_when_it_must(
    levels, base_size
):
    taken = walk_book(levels, base_size=base_size, base_increment=INCREMENT)
    _check_shape(taken, levels)
    total = sum((size for _, size in taken), Decimal(0))
    assert total <= base_size
    if total < base_size:  # short only because every level was taken as far as it goes
        assert _first_level_left(taken, levels) is None


@given(levels=ask_levels(), budget=budgets, fee_rate=fee_rates)
def test_a_walk_by_quote_budget_never_spends_more_than_the_budget_with_fees(
    levels, budget, fee_rate
):
    taken = walk_book(levels, quote_budget=budget, fee_rate=fee_rate, base_increment=INCREMENT)
    _check_shape(taken, levels)
    spent = sum((price * size for price, size in taken), Decimal(0))
    assert spent * (1 + fee_rate) <= budget
    left = _first_level_left(taken, levels)
    if left is not None:  # one more increment at the first level not emptied breaks the budget
        assert (spent + levels[left][0] * INCREMENT) * (1 + fee_rate) > budget


@given(levels=ask_levels(), base_size=order_sizes, limit_price=prices)
def test_a_limited_walk_takes_no_level_beyond_the_limit(levels, base_size, limit_price):
    taken = walk_book(
        levels,
        base_size=base_size,
        base_increment=INCREMENT,
        limit_price=limit_price,
        side=Side.BUY,
    )
    assert all(price <= limit_price for price, _ in taken)
    bids = levels[::-1]  # highest first, as bids are walked
    sold = walk_book(
        bids, base_size=base_size, base_increment=INCREMENT, limit_price=limit_price, side=Side.SELL
    )
    assert all(price >= limit_price for price, _ in sold)
    assert [price for price, _ in sold] == sorted((price for price, _ in sold), reverse=True)


def _engine() -> MatchingEngine:
    orders, trades = count(), count()
    return MatchingEngine(
        {"BTC-USD": RULES},
        FeeRates(maker=Decimal("0.004"), taker=Decimal("0.006")),
        order_ids=lambda: f"o-{next(orders)}",
        trade_ids=lambda: f"t-{next(trades)}",
    )


small_prices = st.integers(9_900, 10_100).map(lambda cents: Decimal(cents) / 100)
resting_orders = st.lists(
    st.tuples(st.sampled_from(list(Side)), order_sizes, small_prices), min_size=1, max_size=8
)
prints = st.lists(st.tuples(small_prices, level_sizes), max_size=30)


@given(orders=resting_orders, trades=prints)
def test_prints_fill_resting_orders_only_at_their_limit_and_never_beyond_size_or_print(
    orders, trades
):
    engine, empty = _engine(), L2Book("BTC-USD")
    placed = [
        engine.submit(_limit(side, size, price), empty, NOW, consume=False)
        for side, size, price in orders
    ]
    by_id = {order.order_id: order for order in placed}
    for step, (price, size) in enumerate(trades):
        fills = engine.on_trade("BTC-USD", price, size, NOW + timedelta(seconds=step))
        assert sum((fill.size for fill in fills), Decimal(0)) <= size
        for fill in fills:
            limit = by_id[fill.order_id].request.limit_price
            assert fill.price == limit and fill.liquidity is Liquidity.MAKER
            assert price < limit if fill.side is Side.BUY else price > limit
    for order in placed:
        assert order.filled_size == sum((fill.size for fill in order.fills), Decimal(0))
        assert order.filled_size <= order.request.base_size
        assert order.filled_value == sum((fill.value for fill in order.fills), Decimal(0))
        done = order.filled_size == order.request.base_size
        assert order.status is (OrderStatus.FILLED if done else OrderStatus.OPEN)


@given(orders=resting_orders, asks=ask_levels(), bid_prices=st.sets(small_prices, max_size=6))
def test_a_book_never_fills_more_than_its_crossing_depth(orders, asks, bid_prices):
    engine, empty = _engine(), L2Book("BTC-USD")
    for side, size, price in orders:
        engine.submit(_limit(side, size, price), empty, NOW, consume=False)
    book = L2Book("BTC-USD")
    bids = [(BookSide.BID, price, Decimal(1)) for price in bid_prices]
    book.apply_snapshot(bids + [(BookSide.OFFER, price, size) for price, size in asks])
    fills = engine.on_book(book, NOW)
    buys = [fill for fill in fills if fill.side is Side.BUY]
    sells = [fill for fill in fills if fill.side is Side.SELL]
    if buys:
        highest = max(fill.price for fill in buys)
        assert sum(f.size for f in buys) <= sum(s for p, s in asks if p < highest)
    if sells:
        lowest = min(fill.price for fill in sells)
        assert sum(f.size for f in sells) <= sum(1 for p in bid_prices if p > lowest)


@given(asks=ask_levels().filter(bool), budget=budgets)
def test_a_market_buy_by_quote_never_costs_more_than_its_quote_size(asks, budget):
    book = L2Book("BTC-USD")
    book.apply_snapshot([(BookSide.OFFER, price, size) for price, size in asks])
    request = OrderRequest(
        client_order_id="c",
        product_id="BTC-USD",
        side=Side.BUY,
        kind=OrderKind.MARKET_IOC,
        quote_size=budget,
    )
    order = _engine().submit(request, book, NOW, consume=True)
    assert order.filled_value + order.total_fees <= budget
    assert order.filled_size <= sum(size for _, size in asks)
    left = {price: size for price, size in book.asks(100)}
    for price, size in asks:  # consuming removed exactly what was filled at each level
        filled = sum((f.size for f in order.fills if f.price == price), Decimal(0))
        assert left.get(price, Decimal(0)) == size - filled


def _limit(side: Side, size: Decimal, price: Decimal) -> OrderRequest:
    return OrderRequest(
        client_order_id="c",
        product_id="BTC-USD",
        side=side,
        kind=OrderKind.LIMIT_GTC,
        base_size=size,
        limit_price=price,
    )


@given(asks=ask_levels().filter(bool), base_size=order_sizes, side=st.sampled_from(list(Side)))
def test_a_taker_fill_lies_between_the_best_and_worst_level_it_touched_at_the_taker_rate(
    asks, base_size, side
):
    book = L2Book("BTC-USD")
    levels = asks if side is Side.BUY else asks[::-1]  # a sell walks the bids, highest first
    book_side = BookSide.OFFER if side is Side.BUY else BookSide.BID
    book.apply_snapshot([(book_side, price, size) for price, size in levels])
    request = OrderRequest(client_order_id="c", product_id="BTC-USD", side=side,
                           kind=OrderKind.MARKET_IOC, base_size=base_size)  # fmt: skip
    order = _engine().submit(request, book, NOW, consume=True)
    assert order.filled_size <= min(base_size, sum(size for _, size in levels))
    if not order.fills:
        return
    touched = [fill.price for fill in order.fills]
    best, worst = (min(touched), max(touched)) if side is Side.BUY else (max(touched), min(touched))
    # it starts at the top of the book: the first level holding one whole increment
    assert best == next(price for price, size in levels if size >= INCREMENT)
    average = order.average_filled_price
    assert min(best, worst) <= average <= max(best, worst)
    for fill in order.fills:  # 60 bps of each fill's value, to the cent, half to even
        assert fill.liquidity is Liquidity.TAKER
        expected = quantize(fill.value * Decimal("0.006"), Decimal("0.01"), Rounding.HALF_EVEN)
        assert fill.commission == expected
    assert order.total_fees == sum((fill.commission for fill in order.fills), Decimal(0))
