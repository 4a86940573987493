"""market-data's candle core: OHLCV from trades, when a bucket closes, when to trust it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.market_data.candles import CandleBuilder, ClosedBucket, bucket_start, unix_seconds
from shared.candle_files import Candle
from shared.coinbase.ws_messages import Trade
from shared.money import Side

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
START = int(BASE.timestamp())  # a multiple of 300
BTC, ETH = "BTC-USD", "ETH-USD"
DELAY = 5.0
M1, M5 = (BTC, 60), (BTC, 300)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def trade(trade_id: str, seconds: float, price: str, size: str = "1", product: str = BTC) -> Trade:
    return Trade(
        trade_id=trade_id,
        product_id=product,
        price=Decimal(price),
        size=Decimal(size),
        side=Side.BUY,
        time=at(seconds),
    )


def builder(*, clean: bool = True) -> CandleBuilder:
    """Both products at 60s and 300s, every cursor at START; the feed clean since before."""
    candles = CandleBuilder([BTC, ETH], [300, 60], close_delay_s=DELAY)
    for route in candles.routes():
        candles.start_at(route, START)
    if clean:
        candles.resumed([BTC, ETH], at(-1000))
    return candles


def moved_on(candles: CandleBuilder, seconds: float = 3600) -> None:
    """A trade of each product after every bucket a test closes: both markets moved on."""
    candles.on_trades([trade("later", seconds, "100"), trade("later", seconds, "100", product=ETH)])


def candle(offset: int, low: str, high: str, open_: str, close: str, volume: str) -> Candle:
    return Candle(
        START + offset, Decimal(low), Decimal(high), Decimal(open_), Decimal(close), Decimal(volume)
    )


def test_bucket_helpers():
    assert unix_seconds(at(12.5)) == START + 12.5
    assert bucket_start(at(59.999999), 60) == START
    assert bucket_start(at(60), 60) == START + 60
    assert bucket_start(at(299), 300) == START
    with pytest.raises(ValueError):
        unix_seconds(datetime(2026, 3, 1))  # noqa: DTZ001 - a naive time is refused


def test_constructor_needs_products_granularities_and_a_non_negative_delay():
    with pytest.raises(ValueError):
        CandleBuilder([], [60], 0)
    with pytest.raises(ValueError):
        CandleBuilder([BTC], [], 0)
    with pytest.raises(ValueError):
        CandleBuilder([BTC], [60], -1)
    assert CandleBuilder([BTC], [300, 60, 60], 0).granularities == (60, 300)


def test_trades_aggregate_into_ohlcv_of_every_granularity_whatever_their_arrival_order():
    candles = builder()
    candles.on_trades(
        [
            trade("10", 5, "101", "0.25"),
            trade("100", 50, "98", "0.5"),
            trade("9", 5, "100", "0.1"),  # same instant as 10: the lower number opened
            trade("50", 30, "97", "2"),
            trade("99", 50, "103", "0.05"),  # same instant as 100: 100 closed
            trade("11", 20, "104", "1"),
            trade("102", 119, "96", "0.7"),
            trade("101", 70, "105", "0.3"),
            trade("103", 300, "99"),  # the next five minutes' first: the first are all in
        ]
    )
    progress = at(300 + DELAY)
    minutes = candles.closed(M1, progress)
    assert [b.start for b in minutes] == [START + 60 * i for i in range(5)]
    assert minutes[0].candle == candle(0, "97", "104", "100", "98", "3.90")
    assert minutes[1].candle == candle(60, "96", "105", "105", "96", "1.0")
    assert [b.candle for b in minutes[2:]] == [None, None, None]
    assert candles.closed(M5, progress) == [
        ClosedBucket(START, candle(0, "96", "105", "100", "96", "4.90"), trusted=True)
    ]
    assert candles.closed((ETH, 60), progress)[0].candle is None


def test_repeated_trade_ids_are_counted_once_per_product():
    candles = builder()
    first = [trade("1", 10, "100", "0.5"), trade("2", 20, "102", "0.25")]
    candles.on_trades(first)
    # A resubscribe's snapshot repeats what arrived already, then the feed goes on.
    candles.on_trades([*first, trade("3", 30, "101", "1")])
    candles.on_trades([trade("1", 40, "90", "7")])  # the same id again, whatever it says
    candles.on_trades([trade("1", 10, "50", "2", product=ETH)])  # ids are per product
    assert candles.closed(M1, at(60 + DELAY))[0].candle == candle(
        0, "100", "102", "100", "101", "1.75"
    )
    assert candles.closed((ETH, 60), at(60 + DELAY))[0].candle == candle(
        0, "50", "50", "50", "50", "2"
    )


def test_nothing_closes_before_the_bucket_end_plus_the_close_delay():
    candles = builder()
    candles.on_trades([trade("1", 10, "100")])
    assert candles.closed(M1, at(60)) == []
    assert candles.closed(M1, at(60 + DELAY) - timedelta(microseconds=1)) == []
    closed = candles.closed(M1, at(60 + DELAY))
    assert [(b.start, b.candle is not None) for b in closed] == [(START, True)]
    assert candles.closed(M5, at(300 + DELAY) - timedelta(microseconds=1)) == []
    assert len(candles.closed(M5, at(300 + DELAY))) == 1


def test_several_buckets_close_in_order_and_an_empty_one_has_no_candle():
    candles = builder()
    candles.on_trades([trade("2", 150, "101"), trade("1", 10, "100")])
    closed = candles.closed(M1, at(180 + DELAY))
    assert [b.start for b in closed] == [START, START + 60, START + 120]
    assert closed[0].candle == candle(0, "100", "100", "100", "100", "1")
    assert closed[1].candle is None and closed[1].trusted
    assert closed[2].candle == candle(120, "101", "101", "101", "101", "1")
    # Deciding is the caller's: until it advances, the same buckets are offered again.
    assert candles.closed(M1, at(180 + DELAY)) == closed
    candles.advance(M1, START + 60)
    assert [b.start for b in candles.closed(M1, at(180 + DELAY))] == [START + 120]


def test_nothing_is_trusted_before_the_feed_resumed():
    candles = builder(clean=False)
    candles.on_trades([trade("1", 10, "100")])
    closed = candles.closed(M1, at(180 + DELAY))
    assert closed and not any(b.trusted for b in closed)
    assert closed[0].candle is not None


def test_after_resuming_only_buckets_starting_at_or_after_that_moment_are_trusted():
    candles = builder(clean=False)
    candles.resumed([BTC], at(90))
    moved_on(candles)
    trust = [b.trusted for b in candles.closed(M1, at(180 + DELAY))]
    assert trust == [False, False, True]  # the bucket holding 90 began before it
    candles.resumed([BTC], at(60))
    trust = [b.trusted for b in candles.closed(M1, at(180 + DELAY))]
    assert trust == [False, True, True]  # a bucket starting at the very moment is whole
    assert not candles.closed(M5, at(300 + DELAY))[0].trusted


def test_a_disruption_distrusts_later_closing_buckets_until_resumed():
    candles = builder()
    moved_on(candles)
    assert candles.closed(M1, at(60 + DELAY))[0].trusted
    candles.advance(M1, START)
    candles.disrupted([BTC])
    assert not any(b.trusted for b in candles.closed(M1, at(240 + DELAY)))
    candles.resumed([BTC], at(150))
    trust = [(b.start - START, b.trusted) for b in candles.closed(M1, at(300 + DELAY))]
    assert trust == [(60, False), (120, False), (180, True), (240, True)]


def test_a_break_inside_a_bucket_distrusts_that_bucket_only():
    candles = builder()
    candles.on_trades([trade("1", 65, "100")])
    candles.disrupted([BTC])
    candles.resumed([BTC], at(75))
    candles.on_trades([trade("3", 130, "101")])
    moved_on(candles)
    closed = candles.closed(M1, at(180 + DELAY))
    assert [b.trusted for b in closed] == [False, False, True]
    assert closed[1].candle is not None  # built, but the shell must fetch it instead


def test_products_are_trusted_independently():
    candles = builder()
    moved_on(candles)
    candles.disrupted([BTC])
    assert not candles.closed(M1, at(60 + DELAY))[0].trusted
    assert candles.closed((ETH, 60), at(60 + DELAY))[0].trusted
    candles.disrupted(["SOL-USD"])  # not ours: ignored
    candles.resumed(["SOL-USD"], at(0))
    assert candles.closed((ETH, 300), at(300 + DELAY))[0].trusted


def test_start_at_accepts_only_bucket_starts():
    candles = CandleBuilder([BTC], [60, 300], DELAY)
    with pytest.raises(ValueError):
        candles.start_at(M1, START + 30)
    with pytest.raises(ValueError):
        candles.start_at(M5, START + 60)
    candles.start_at(M5, START + 300)
    assert candles.cursor(M5) == START + 300
    assert candles.cursor(M1) is None


def test_closed_before_a_start_is_set_raises():
    candles = CandleBuilder([BTC], [60], DELAY)
    candles.on_trades([trade("1", 10, "100")])
    with pytest.raises(RuntimeError):
        candles.closed(M1, at(600))


def test_advance_moves_the_cursor_forward_only():
    candles = builder()
    candles.advance(M1, START + 60)
    assert candles.cursor(M1) == START + 120
    candles.advance(M1, START)  # an older publication: no step back
    assert candles.cursor(M1) == START + 120
    candles.advance(M1, START + 60)
    assert candles.cursor(M1) == START + 120
    assert [b.start for b in candles.closed(M1, at(240 + DELAY))] == [START + 120, START + 180]
    fresh = CandleBuilder([BTC], [60], DELAY)
    fresh.advance(M1, START)  # no cursor yet: advancing sets one
    assert fresh.cursor(M1) == START + 60


def test_trades_of_decided_buckets_are_late_and_change_nothing():
    candles = builder()
    candles.on_trades([trade("1", 10, "100"), trade("2", 130, "100")])
    candles.advance(M1, START + 60)
    candles.on_trades([trade("3", 70, "90", "5"), trade("4", 131, "110", "2")])
    assert candles.late_trades == 1  # the 300s bucket of trade 3 is still open
    closed = candles.closed(M1, at(180 + DELAY))
    assert [b.start for b in closed] == [START + 120]
    assert closed[0].candle == candle(120, "100", "110", "100", "110", "3")
    five = candles.closed(M5, at(300 + DELAY))[0].candle
    assert five == candle(0, "90", "110", "100", "110", "9")
    candles.advance(M5, START)
    candles.on_trades([trade("5", 100, "1")])
    assert candles.late_trades == 3  # late for both granularities now
    assert candles.closed(M1, at(180 + DELAY))[0].candle == closed[0].candle
    # Nothing was kept for the decided buckets either: set back, they are empty.
    candles.start_at(M1, START)
    assert [b.candle for b in candles.closed(M1, at(120 + DELAY))] == [None, None]


def test_start_at_forgets_buckets_before_it():
    candles = CandleBuilder([BTC], [60], DELAY)
    candles.resumed([BTC], at(-1000))
    candles.on_trades([trade("1", 10, "100"), trade("2", 70, "101")])
    candles.start_at(M1, START + 60)
    candles.start_at(M1, START)  # a restart may set it back; the old bucket is gone
    closed = candles.closed(M1, at(120 + DELAY))
    assert [b.candle is None for b in closed] == [True, False]


# --- any sequence of trades --------------------------------------------------------

HORIZON_US = 900 * 1_000_000  # three 300s buckets
_MOMENTS = st.one_of(
    st.integers(0, HORIZON_US - 1),
    st.sampled_from([0, 59_999_999, 60_000_000, 299_999_999, 300_000_000, HORIZON_US - 1]),
)
_TRADES = st.lists(
    st.tuples(_MOMENTS, st.integers(1, 10_000_000), st.integers(1, 100_000_000)), max_size=40
)


def _from_scratch(trades: list[Trade], start: int, granularity: int) -> Candle | None:
    inside = [
        t
        for t in trades
        if start <= START + (t.time - BASE) // timedelta(seconds=1) < start + granularity
    ]
    if not inside:
        return None
    ordered = sorted(inside, key=lambda t: (t.time, int(t.trade_id)))
    prices = [t.price for t in inside]
    volume = sum((t.size for t in inside), Decimal(0))
    return Candle(start, min(prices), max(prices), ordered[0].price, ordered[-1].price, volume)


@settings(max_examples=200, deadline=None)
@given(rows=_TRADES, data=st.data())
def test_trusted_candles_equal_an_aggregation_from_scratch(
    rows: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    ids = data.draw(
        st.lists(st.integers(1, 10**12), min_size=len(rows), max_size=len(rows), unique=True)
    )
    trades = [
        Trade(
            trade_id=str(trade_id),
            product_id=BTC,
            price=Decimal(cents).scaleb(-2),
            size=Decimal(sats).scaleb(-8),
            side=Side.SELL,
            time=BASE + timedelta(microseconds=moment),
        )
        for (moment, cents, sats), trade_id in zip(rows, ids, strict=True)
    ]
    repeated = data.draw(st.lists(st.sampled_from(trades), max_size=5)) if trades else []
    candles = builder()
    candles.on_trades(trades)
    candles.on_trades(repeated)
    moved_on(candles, 900)  # in the first bucket not closed here
    for granularity in (60, 300):
        closed = candles.closed((BTC, granularity), at(900 + DELAY))
        assert [b.start for b in closed] == list(range(START, START + 900, granularity))
        for bucket in closed:
            assert bucket.trusted
            assert bucket.candle == _from_scratch(trades, bucket.start, granularity)
    assert candles.late_trades == 0


def test_a_bucket_is_trusted_only_once_a_later_trade_of_its_own_product_is_in():
    # Progress is the newest stamp of any message. Another product's trades (or a
    # heartbeat, or a book update) may be stamped past a print of this product still on
    # its way; only this product's own trades come in order with it.
    candles = builder()
    candles.on_trades([trade("1", 10, "100")])
    candles.on_trades([trade("1", 70, "2000", product=ETH)])  # ETH's message: progress 75
    [bucket] = candles.closed(M1, at(60 + DELAY))
    assert not bucket.trusted  # fetched from the venue, not published short of a print
    assert bucket.candle == candle(0, "100", "100", "100", "100", "1")
    assert candles.closed((ETH, 60), at(60 + DELAY))[0].trusted  # ETH's own trade is later
    # The print in flight arrives; once a BTC trade after the bucket is in, it is whole.
    candles.on_trades([trade("2", 50, "101", "0.5")])
    assert not candles.closed(M1, at(60 + DELAY))[0].trusted
    candles.on_trades([trade("3", 60, "102")])
    assert candles.closed(M1, at(60 + DELAY)) == [
        ClosedBucket(START, candle(0, "100", "101", "100", "101", "1.5"), trusted=True)
    ]
    assert candles.late_trades == 0


def test_a_quiet_products_buckets_are_not_trusted_even_when_empty():
    # No trade of it since: its prints of the bucket, if any, may all still be on the way.
    candles = builder()
    candles.on_trades([trade("1", 10, "100", product=ETH), trade("2", 130, "100", product=ETH)])
    assert [b.trusted for b in candles.closed((ETH, 60), at(180 + DELAY))] == [True, True, False]
    assert [b.trusted for b in candles.closed(M1, at(180 + DELAY))] == [False, False, False]
    candles.on_trades([trade("1", 200, "100")])
    assert [b.trusted for b in candles.closed(M1, at(180 + DELAY))] == [True, True, True]
