"""exchange-sim market: the synthetic walk, the book it shapes, candle replay and history."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.exchange_sim.candles import Candle, CandleStore, Granularity
from services.exchange_sim.market import (
    MarketProfile,
    MarketStep,
    ReplayMarket,
    SyntheticMarket,
    history_candles,
)
from shared.money import Side

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BTC = MarketProfile("BTC-USD", Decimal("0.01"), Decimal("0.00000001"), Decimal("60000"))


def _steps(market: SyntheticMarket, seconds: list[float]) -> list[MarketStep]:
    return [market.advance(START + timedelta(seconds=s)) for s in seconds]


def _mid(step: MarketStep) -> Decimal:
    return (step.bids[0][0] + step.asks[0][0]) / 2


def _assert_sane_book(profile: MarketProfile, step: MarketStep) -> None:
    bids, asks = step.bids, step.asks
    assert 1 <= len(bids) <= profile.depth_levels
    assert 1 <= len(asks) <= profile.depth_levels
    assert asks[0][0] - bids[0][0] >= profile.price_increment  # never crossed, never locked
    assert all(a[0] > b[0] for a, b in zip(bids, bids[1:], strict=False))
    assert all(a[0] < b[0] for a, b in zip(asks, asks[1:], strict=False))
    for price, size in bids + asks:
        assert price > 0 and size > 0
        assert price % profile.price_increment == 0
        assert size % profile.base_increment == 0


# --- synthetic ------------------------------------------------------------------------


def test_same_seed_and_times_give_the_same_market_and_another_seed_does_not():
    times = [0.5, 1, 1, 7.25, 60, 61, 600]
    first = _steps(SyntheticMarket(BTC, 42, START), times)
    again = _steps(SyntheticMarket(BTC, 42, START), times)
    other = _steps(SyntheticMarket(BTC, 43, START), times)
    assert first == again
    assert first != other
    assert sum(len(step.prints) for step in first) > 0


profiles = st.builds(
    MarketProfile,
    product_id=st.just("X-USD"),
    price_increment=st.sampled_from([Decimal("0.01"), Decimal("0.0001"), Decimal("0.25")]),
    base_increment=st.sampled_from([Decimal("0.00000001"), Decimal("0.001"), Decimal("1")]),
    start_price=st.sampled_from(
        [Decimal("0.05"), Decimal("3.21"), Decimal("2500"), Decimal("60000")]
    ),  # fmt: skip
    annual_volatility=st.floats(0.05, 3.0),
    spread_bps=st.floats(0.0, 50.0),
    depth_levels=st.integers(1, 30),
    trades_per_minute=st.floats(0.0, 120.0),
)


@settings(max_examples=40, deadline=None)
@given(
    profile=profiles,
    seed=st.integers(0, 2**32),
    gaps=st.lists(st.floats(0.0, 120.0), min_size=1, max_size=15),
)
def test_book_is_never_crossed_and_respects_increments(profile, seed, gaps):
    market = SyntheticMarket(profile, seed, START)
    previous = START
    for gap in gaps:
        step = market.advance(previous + timedelta(seconds=gap))
        _assert_sane_book(profile, step)
        assert [p.time for p in step.prints] == sorted(p.time for p in step.prints)
        for trade in step.prints:
            assert previous < trade.time <= step.time
            assert trade.size > 0 and trade.size % profile.base_increment == 0
            assert trade.price > 0 and trade.price % profile.price_increment == 0
        previous = step.time


def test_advancing_backwards_or_with_a_naive_time_is_refused():
    market = SyntheticMarket(BTC, 1, START)
    market.advance(START + timedelta(seconds=10))
    with pytest.raises(ValueError, match="forward"):
        market.advance(START + timedelta(seconds=9))
    with pytest.raises(ValueError, match="naive"):
        market.advance(datetime(2024, 5, 2))  # noqa: DTZ001 - the naive time is the point


def test_realized_volatility_of_a_one_second_walk_is_near_the_profile():
    profile = MarketProfile("BTC-USD", Decimal("0.01"), Decimal("0.00000001"),
                            Decimal("60000"), annual_volatility=0.8,
                            trades_per_minute=0.0)  # fmt: skip
    market = SyntheticMarket(profile, 7, START)
    mids = [float(_mid(step)) for step in _steps(market, list(range(1, 3601)))]
    returns = [math.log(b / a) for a, b in zip(mids, mids[1:], strict=False)]
    annualized = statistics.pstdev(returns) * math.sqrt(365 * 24 * 3600)
    assert 0.8 / 1.5 < annualized < 0.8 * 1.5


def test_spread_is_near_the_profile_and_the_mid_sits_inside_it():
    market = SyntheticMarket(BTC, 3, START)
    spreads = []
    for second in range(1, 301):
        step = market.advance(START + timedelta(seconds=second))
        bid, ask = step.bids[0][0], step.asks[0][0]
        assert bid < market.mid < ask
        spreads.append(float((ask - bid) / market.mid) * 10_000)
    assert 1.5 < statistics.mean(spreads) < 2.5  # profile: 2 bps


def test_prints_arrive_at_the_profile_rate_with_the_profile_notional():
    market = SyntheticMarket(BTC, 11, START)
    orders: dict[tuple[datetime, Side], Decimal] = {}
    for step in _steps(market, [60.0 * minute for minute in range(1, 201)]):
        for trade in step.prints:  # a walking order prints at several levels at one time
            key = (trade.time, trade.side)
            orders[key] = orders.get(key, Decimal(0)) + trade.price * trade.size
    assert 0.9 * 6000 < len(orders) < 1.1 * 6000  # 30 a minute for 200 minutes
    mean_notional = statistics.mean(float(value) for value in orders.values())
    assert 1700 < mean_notional < 2300
    buys = sum(1 for _, side in orders if side is Side.BUY)
    assert 0.4 < buys / len(orders) < 0.6


def test_a_walking_order_prints_deeper_prices_in_its_direction():
    market = SyntheticMarket(BTC, 5, START)
    walks = 0
    for step in _steps(market, [60.0 * minute for minute in range(1, 31)]):
        by_order: dict[tuple[datetime, Side], list[Decimal]] = {}
        for trade in step.prints:
            by_order.setdefault((trade.time, trade.side), []).append(trade.price)
        for (_, side), prices in by_order.items():
            if len(prices) > 1:
                walks += 1
                assert prices == sorted(prices, reverse=side is Side.SELL)
                assert len(set(prices)) == len(prices) <= 3
    assert walks > 20  # about one order in ten walks


def test_profile_rejects_nonsense():
    with pytest.raises(ValueError):
        MarketProfile("X", Decimal("0"), Decimal("1"), Decimal("1"))
    with pytest.raises(ValueError):
        MarketProfile("X", Decimal("0.01"), Decimal("1"), Decimal("1"), depth_levels=0)


# --- replay ---------------------------------------------------------------------------

REPLAY_START = 1714564800  # 2024-05-01T12:00:00Z


def _replay_candles() -> list[Candle]:
    rows = [  # open, low, high, close, volume; each open is the previous close
        ("60000.00", "59950.00", "60100.00", "60080.00", "2.5"),  # up
        ("60080.00", "59900.00", "60090.00", "59920.00", "4.0"),  # down
        ("59920.00", "59920.00", "59920.00", "59920.00", "0.3"),  # flat
        ("59920.00", "59800.00", "60010.00", "60005.50", "1.75"),  # up
    ]
    return [
        Candle(REPLAY_START + 60 * i, Decimal(low), Decimal(high), Decimal(open_),
               Decimal(close), Decimal(volume))
        for i, (open_, low, high, close, volume) in enumerate(rows)
    ]  # fmt: skip


def _replay_at(market: ReplayMarket, seconds: float) -> MarketStep:
    return market.advance(market.first_time + timedelta(seconds=seconds))


def test_replay_mid_passes_through_open_extremes_and_close_at_their_times():
    candles = _replay_candles()
    market = ReplayMarket(BTC, candles, 60, seed=9)
    assert market.first_time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert market.last_time == datetime(2024, 5, 1, 12, 4, tzinfo=UTC)
    for index, candle in enumerate(candles):
        first, second = (candle.low, candle.high)
        if candle.close < candle.open:
            first, second = candle.high, candle.low
        for offset, expected in ((0, candle.open), (20, first), (40, second), (60, candle.close)):
            seconds = 60 * index + offset
            step = _replay_at(market, seconds)
            assert market.mid_at(step.time) == expected
            assert step.bids[0][0] <= expected <= step.asks[0][0]
            assert step.asks[0][0] - step.bids[0][0] < expected * Decimal("0.0005")
            _assert_sane_book(BTC, step)
    halfway = market.mid_at(market.first_time + timedelta(seconds=10))
    assert halfway == (candles[0].open + candles[0].low) / 2


def test_replay_prints_share_out_each_candles_volume_inside_its_range():
    candles = _replay_candles()
    market = ReplayMarket(BTC, candles, 60, seed=4)
    rebuilt = CandleStore()
    volume_by_candle = [Decimal(0)] * len(candles)
    for second in range(1, 241):
        for trade in _replay_at(market, second).prints:
            rebuilt.add_print(trade.time, trade.price, trade.size)
            index = (int(trade.time.timestamp()) - REPLAY_START) // 60
            volume_by_candle[index] += trade.size
    assert volume_by_candle == [candle.volume for candle in candles]
    minutes = rebuilt.candles(REPLAY_START, REPLAY_START + 240, Granularity.ONE_MINUTE)
    assert [m.start for m in reversed(minutes)] == [c.start for c in candles]
    for minute, source in zip(reversed(minutes), candles, strict=True):
        assert source.low <= minute.low <= minute.high <= source.high


def test_replay_prints_do_not_depend_on_how_the_caller_steps():
    candles = _replay_candles()
    fine = ReplayMarket(BTC, candles, 60, seed=2)
    fine_prints = [p for s in range(1, 300) for p in _replay_at(fine, s * 0.8).prints]
    coarse = ReplayMarket(BTC, candles, 60, seed=2)
    coarse_prints = _replay_at(coarse, 239.2).prints
    assert fine_prints == coarse_prints


def test_replay_before_the_first_candle_is_an_error_and_after_the_last_holds_the_close():
    candles = _replay_candles()
    market = ReplayMarket(BTC, candles, 60, seed=1)
    with pytest.raises(ValueError, match="before the first candle"):
        market.advance(market.first_time - timedelta(seconds=1))
    _replay_at(market, 240)
    later = _replay_at(market, 3600)
    assert later.prints == []
    assert market.mid_at(later.time) == candles[-1].close
    assert later.bids[0][0] <= candles[-1].close <= later.asks[0][0]


def test_replay_holds_the_close_through_a_gap_and_refuses_overlaps():
    one = Decimal("100")
    candles = [Candle(0, one, one, one, one, Decimal("1")),
               Candle(300, Decimal("99"), one, one, Decimal("99"), Decimal("1"))]  # fmt: skip
    market = ReplayMarket(BTC, candles, 60, seed=1)
    gap = _replay_at(market, 120)
    assert market.mid_at(gap.time) == one
    assert all(trade.time.timestamp() < 60 for trade in gap.prints)
    with pytest.raises(ValueError, match="overlap"):
        ReplayMarket(BTC, [candles[0], Candle(30, one, one, one, one, one)], 60, seed=1)


# --- synthetic history ----------------------------------------------------------------


def test_history_ends_at_the_start_price_and_is_plausible_and_deterministic():
    end = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    candles = history_candles(BTC, 8, end, 600)
    assert candles == history_candles(BTC, 8, end, 600)
    assert candles != history_candles(BTC, 9, end, 600)
    assert [c.start for c in candles] == list(range(REPLAY_START - 600 * 60, REPLAY_START, 60))
    assert candles[-1].close == BTC.start_price
    for before, after in zip(candles, candles[1:], strict=False):
        assert after.open == before.close
    for candle in candles:
        assert 0 < candle.low <= min(candle.open, candle.close)
        assert max(candle.open, candle.close) <= candle.high
        assert candle.low % BTC.price_increment == 0 and candle.volume % BTC.base_increment == 0
    # 30 trades of $2000 a minute at ~$60000: about one coin a minute.
    assert 0.8 < statistics.mean(float(c.volume) for c in candles) < 1.2
    closes = [float(c.close) for c in candles]
    returns = [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False)]
    annualized = statistics.pstdev(returns) * math.sqrt(365 * 24 * 60)
    assert 0.6 / 1.5 < annualized < 0.6 * 1.5
