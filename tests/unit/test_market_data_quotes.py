"""market-data's quote core: a tick when the top of book or the last price changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.market_data.quotes import QuoteTracker
from shared.coinbase.book import BookSide, L2Book
from shared.coinbase.ws_messages import Trade
from shared.money import Side

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BTC = "BTC-USD"
BID, ASK = BookSide.BID, BookSide.OFFER


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def d(value: str) -> Decimal:
    return Decimal(value)


def trade(
    trade_id: str, seconds: float, price: str, size: str = "0.5", product: str = BTC
) -> Trade:
    return Trade(
        trade_id=trade_id,
        product_id=product,
        price=d(price),
        size=d(size),
        side=Side.BUY,
        time=at(seconds),
    )


def two_sided() -> tuple[QuoteTracker, L2Book]:
    """A tracker whose book has 100 x 1 bid, 101 x 2 ask, and that tick published."""
    tracker, book = QuoteTracker([BTC]), L2Book(BTC)
    book.apply_snapshot([(BID, d("100"), d("1")), (BID, d("99"), d("5")), (ASK, d("101"), d("2"))])
    assert tracker.on_book(book, at(0)) is not None
    return tracker, book


def test_no_tick_until_both_sides_exist():
    tracker, book = QuoteTracker([BTC]), L2Book(BTC)
    book.apply_snapshot([(BID, d("100"), d("1"))])
    assert tracker.on_book(book, at(0)) is None
    assert tracker.on_trades([trade("1", 1, "100.5")]) == []
    book.apply_update(ASK, d("101"), d("2"))
    tick = tracker.on_book(book, at(2))
    assert tick is not None
    assert (tick.product_id, tick.best_bid, tick.best_bid_size) == (BTC, d("100"), d("1"))
    assert (tick.best_ask, tick.best_ask_size) == (d("101"), d("2"))
    assert (tick.last_price, tick.last_size, tick.exchange_time) == (d("100.5"), d("0.5"), at(2))


def test_a_tick_when_the_best_bid_or_ask_changes():
    tracker, book = two_sided()
    book.apply_update(BID, d("100.5"), d("0.3"))
    tick = tracker.on_book(book, at(1))
    assert tick is not None and (tick.best_bid, tick.best_bid_size) == (d("100.5"), d("0.3"))
    book.apply_update(ASK, d("101"), d("0"))  # the best ask is taken out
    book.apply_update(ASK, d("102"), d("4"))
    tick = tracker.on_book(book, at(2))
    assert tick is not None and (tick.best_ask, tick.best_ask_size) == (d("102"), d("4"))
    assert tick.exchange_time == at(2)


def test_a_size_change_alone_is_no_tick():
    tracker, book = two_sided()
    book.apply_update(BID, d("100"), d("7"))
    book.apply_update(ASK, d("101"), d("0.1"))
    book.apply_update(BID, d("98"), d("3"))  # below the top: not even the top's size
    assert tracker.on_book(book, at(1)) is None
    # When a price does change, the tick carries the sizes as they are now.
    book.apply_update(ASK, d("100.8"), d("3"))
    tick = tracker.on_book(book, at(2))
    assert tick is not None and (tick.best_bid, tick.best_bid_size) == (d("100"), d("7"))
    assert (tick.best_ask, tick.best_ask_size) == (d("100.8"), d("3"))
    book.apply_update(ASK, d("100.8"), d("0"))  # back to the ask already seen: still news
    tick = tracker.on_book(book, at(3))
    assert tick is not None and (tick.best_ask, tick.best_ask_size) == (d("101"), d("0.1"))


def test_a_trade_at_a_new_price_is_a_tick_with_the_last_trade():
    tracker, _ = two_sided()
    ticks = tracker.on_trades([trade("1", 1, "100.25", "0.75")])
    assert len(ticks) == 1
    tick = ticks[0]
    assert (tick.last_price, tick.last_size, tick.exchange_time) == (d("100.25"), d("0.75"), at(1))
    assert (tick.best_bid, tick.best_ask) == (d("100"), d("101"))
    assert tracker.on_trades([trade("2", 2, "100.25", "3")]) == []  # same price: no news
    ticks = tracker.on_trades([trade("3", 3, "100.5"), trade("4", 4, "100.75", "0.1")])
    assert [(t.last_price, t.last_size, t.exchange_time) for t in ticks] == [
        (d("100.75"), d("0.1"), at(4))
    ]


def test_an_older_trade_does_not_replace_the_last():
    tracker, book = two_sided()
    assert tracker.on_trades([trade("5", 10, "100.5", "1")])
    assert tracker.on_trades([trade("4", 9, "100.9", "2")]) == []
    assert tracker.on_trades([trade("6", 8, "100.8", "2")]) == []  # a higher id, but older
    book.apply_update(BID, d("100.2"), d("1"))
    tick = tracker.on_book(book, at(11))
    assert tick is not None and (tick.last_price, tick.last_size) == (d("100.5"), d("1"))


def test_reset_silences_the_product_until_its_book_is_back():
    tracker, book = two_sided()
    tracker.reset(BTC)
    assert tracker.on_trades([trade("1", 1, "100.5")]) == []
    book.apply_snapshot([(BID, d("100.1"), d("1")), (ASK, d("100.9"), d("1"))])
    tick = tracker.on_book(book, at(2))
    assert tick is not None
    assert (tick.best_bid, tick.best_ask, tick.last_price) == (d("100.1"), d("100.9"), d("100.5"))
    tracker.reset("SOL-USD")  # not ours: nothing happens


def test_a_crossed_or_locked_book_is_no_tick():
    tracker, book = QuoteTracker([BTC]), L2Book(BTC)
    book.apply_snapshot([(BID, d("101"), d("1")), (ASK, d("100"), d("1"))])
    assert tracker.on_book(book, at(0)) is None
    book.apply_update(ASK, d("101"), d("1"))
    book.apply_update(ASK, d("100"), d("0"))
    assert tracker.on_book(book, at(1)) is None  # bid == ask
    book.apply_update(BID, d("100.5"), d("1"))
    book.apply_update(BID, d("101"), d("0"))
    tick = tracker.on_book(book, at(2))
    assert tick is not None and (tick.best_bid, tick.best_ask) == (d("100.5"), d("101"))


def test_unknown_products_are_ignored():
    tracker, _ = two_sided()
    other = L2Book("ETH-USD")
    other.apply_snapshot([(BID, d("10"), d("1")), (ASK, d("11"), d("1"))])
    assert tracker.on_book(other, at(1)) is None
    assert tracker.on_trades([trade("1", 1, "10.5", product="ETH-USD")]) == []
    ticks = tracker.on_trades([trade("2", 2, "10.5", product="ETH-USD"), trade("3", 2, "100.5")])
    assert [t.product_id for t in ticks] == [BTC]
