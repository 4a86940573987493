"""Incremental indicators against slow from-scratch references, plus hand-worked values."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.signal.indicators import ATR, EMA, RSI, SMA, Bollinger, Donchian

Candle = tuple[float, float, float]

prices = st.lists(st.floats(1.0, 1e5), max_size=300)
periods = st.integers(1, 40)


@st.composite
def candle_series(draw: st.DrawFn) -> list[Candle]:
    """High/low/close candles with low <= close <= high, prices in [1, 1e5]."""
    raw = draw(
        st.lists(
            st.tuples(st.floats(1.0, 1e5), st.floats(1.0, 1e5), st.floats(0.0, 1.0)), max_size=300
        )
    )
    return [(max(a, b), min(a, b), min(a, b) + t * abs(a - b)) for a, b, t in raw]


def assert_close(got: float | None, want: float | None, scale: float = 1.0) -> None:
    assert (got is None) == (want is None), (got, want)
    if got is not None and want is not None:
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12 * scale), (got, want)


# --- slow references: recompute everything from the start at every index ---


def reference_sma(values: Sequence[float], period: int) -> list[float | None]:
    return [
        math.fsum(values[i - period + 1 : i + 1]) / period if i >= period - 1 else None
        for i in range(len(values))
    ]


def reference_ema(values: Sequence[float], period: int) -> list[float | None]:
    out: list[float | None] = []
    alpha = 2 / (period + 1)
    for i in range(len(values)):
        if i < period - 1:
            out.append(None)
            continue
        ema = math.fsum(values[:period]) / period
        for value in values[period : i + 1]:
            ema = alpha * value + (1 - alpha) * ema
        out.append(ema)
    return out


def reference_rsi(values: Sequence[float], period: int) -> list[float | None]:
    out: list[float | None] = []
    all_changes = [later - earlier for earlier, later in zip(values, values[1:], strict=False)]
    for i in range(len(values)):
        if i < period:
            out.append(None)
            continue
        changes = all_changes[:i]
        gain = math.fsum(max(c, 0.0) for c in changes[:period]) / period
        loss = math.fsum(max(-c, 0.0) for c in changes[:period]) / period
        for c in changes[period:]:
            gain = (gain * (period - 1) + max(c, 0.0)) / period
            loss = (loss * (period - 1) + max(-c, 0.0)) / period
        if loss == 0:
            out.append(50.0 if gain == 0 else 100.0)
        else:
            out.append(100 - 100 / (1 + gain / loss))
    return out


def reference_atr(candles: Sequence[Candle], period: int) -> list[float | None]:
    out: list[float | None] = []
    for i in range(len(candles)):
        if i < period - 1:
            out.append(None)
            continue
        ranges = [candles[0][0] - candles[0][1]]
        for (high, low, _), (_, _, prior_close) in zip(candles[1 : i + 1], candles, strict=False):
            ranges.append(max(high - low, abs(high - prior_close), abs(low - prior_close)))
        atr = statistics.fmean(ranges[:period])
        for true_range in ranges[period:]:
            atr = (atr * (period - 1) + true_range) / period
        out.append(atr)
    return out


def reference_donchian(candles: Sequence[Candle], period: int) -> list[tuple[float, float] | None]:
    return [
        (
            max(c[0] for c in candles[i - period + 1 : i + 1]),
            min(c[1] for c in candles[i - period + 1 : i + 1]),
        )
        if i >= period - 1
        else None
        for i in range(len(candles))
    ]


# --- incremental == reference at every step ---


@settings(max_examples=100, deadline=None)
@given(prices, periods)
def test_sma_matches_reference(values: list[float], period: int) -> None:
    sma = SMA(period)
    for i, (value, want) in enumerate(zip(values, reference_sma(values, period), strict=True)):
        got = sma.update(value)
        assert_close(got, want)
        assert sma.value == got and sma.ready == (i >= period - 1)


@settings(max_examples=100, deadline=None)
@given(prices, periods)
def test_ema_matches_reference(values: list[float], period: int) -> None:
    ema = EMA(period)
    for i, (value, want) in enumerate(zip(values, reference_ema(values, period), strict=True)):
        got = ema.update(value)
        assert_close(got, want)
        assert ema.value == got and ema.ready == (i >= period - 1)


@settings(max_examples=100, deadline=None)
@given(prices, periods)
def test_rsi_matches_reference(values: list[float], period: int) -> None:
    rsi = RSI(period)
    for i, (value, want) in enumerate(zip(values, reference_rsi(values, period), strict=True)):
        got = rsi.update(value)
        assert_close(got, want, scale=1e3)  # RSI lives in [0, 100]: absolute error matters
        assert rsi.value == got and rsi.ready == (i >= period)
        assert got is None or 0.0 <= got <= 100.0


@settings(max_examples=100, deadline=None)
@given(candle_series(), periods)
def test_atr_matches_reference(candles: list[Candle], period: int) -> None:
    atr = ATR(period)
    scale = max((c[0] for c in candles), default=1.0)
    for i, (candle, want) in enumerate(zip(candles, reference_atr(candles, period), strict=True)):
        got = atr.update(*candle)
        assert_close(got, want, scale)
        assert atr.value == got and atr.ready == (i >= period - 1)


@settings(max_examples=100, deadline=None)
@given(prices, periods, st.sampled_from([0.0, 1.0, 2.0, 2.5]))
def test_bollinger_matches_reference(values: list[float], period: int, k: float) -> None:
    bands = Bollinger(period, k)
    for i, value in enumerate(values):
        got = bands.update(value)
        assert bands.ready == (i >= period - 1) and bands.value == got == bands.middle
        if i < period - 1:
            assert None is got is bands.upper is bands.lower is bands.standard_deviation
            continue
        window = values[i - period + 1 : i + 1]
        scale = max(values[: i + 1])
        mean, variance = statistics.fmean(window), statistics.pvariance(window)  # exact sums
        deviation = bands.standard_deviation
        assert got is not None and deviation is not None
        assert bands.upper is not None and bands.lower is not None
        assert math.isclose(got, mean, rel_tol=1e-9)
        # Sum-of-squares variance loses ~eps * price**2 to cancellation, never more.
        assert math.isclose(deviation**2, variance, rel_tol=1e-9, abs_tol=1e-12 * scale**2)
        assert math.isclose(bands.upper, mean + k * math.sqrt(variance), abs_tol=1e-5 * scale)
        assert math.isclose(bands.lower, mean - k * math.sqrt(variance), abs_tol=1e-5 * scale)
        assert bands.lower <= got <= bands.upper


@settings(max_examples=100, deadline=None)
@given(candle_series(), periods)
def test_donchian_matches_reference(candles: list[Candle], period: int) -> None:
    channel = Donchian(period)
    expected = reference_donchian(candles, period)
    for i, (high, low, _) in enumerate(candles):
        got = channel.update(high, low)
        want = expected[i]
        prior = expected[i - 1] if i > 0 else None
        assert channel.ready == (want is not None)
        assert (channel.upper, channel.lower) == (want or (None, None))
        assert (channel.previous_upper, channel.previous_lower) == (prior or (None, None))
        assert got == channel.value == (None if want is None else (want[0] + want[1]) / 2)


# --- hand-worked values ---


def test_sma_of_one_to_five() -> None:
    sma = SMA(3)
    assert [sma.update(v) for v in range(1, 6)] == [None, None, 2.0, 3.0, 4.0]
    whole = SMA(5)
    assert [whole.update(v) for v in range(1, 6)][-1] == 3.0


def test_ema_is_seeded_with_the_sma() -> None:
    ema = EMA(3)  # alpha = 0.5
    assert [ema.update(v) for v in [1, 2, 3, 4, 5, 1]] == [None, None, 2.0, 3.0, 4.0, 2.5]


def test_rsi_known_values() -> None:
    rising, falling, flat = RSI(14), RSI(14), RSI(14)
    for step in range(30):
        rising.update(100 + step)
        falling.update(100 - step)
        flat.update(100)
    assert (rising.value, falling.value, flat.value) == (100.0, 0.0, 50.0)
    rsi = RSI(2)  # changes +1, -1, +1: seed 0.5/0.5 -> 50, then gain 0.75, loss 0.25 -> RS 3
    assert [rsi.update(v) for v in [1, 2, 1, 2]] == [None, None, 50.0, 75.0]


def test_atr_known_values() -> None:
    atr = ATR(2)
    # True ranges: 2 (first candle: high - low), 2, 3, 3 (gap up from 12 to a 14-15 bar).
    candles = [(10, 8, 9), (11, 9, 10), (13, 10, 12), (15, 14, 14.5)]
    assert [atr.update(*c) for c in candles] == [None, 2.0, 2.5, 2.75]


def test_bollinger_known_values() -> None:
    bands = Bollinger(8, 2)
    for v in [2, 4, 4, 4, 5, 5, 7, 9]:  # mean 5, population stddev 2
        bands.update(v)
    assert (bands.lower, bands.middle, bands.upper, bands.standard_deviation) == (1, 5, 9, 2)


def test_donchian_known_series_and_prior_channel() -> None:
    channel = Donchian(3)
    highs, lows = [5, 7, 6, 4, 3], [1, 2, 3, 2, 2.5]
    seen = []
    for high, low in zip(highs, lows, strict=True):
        channel.update(high, low)
        seen.append((channel.upper, channel.lower, channel.previous_upper, channel.previous_lower))
    assert seen == [
        (None, None, None, None),
        (None, None, None, None),
        (7, 1, None, None),
        (7, 2, 7, 1),
        (6, 2, 7, 2),
    ]
    assert channel.value == 4.0


def test_decimal_inputs_are_accepted() -> None:
    sma = SMA(2)
    sma.update(Decimal("1.5"))
    assert sma.update(Decimal("2.5")) == 2.0


# --- validation ---


@pytest.mark.parametrize("make", [SMA, EMA, RSI, ATR, Donchian, lambda p: Bollinger(p, 2.0)])
def test_period_must_be_positive(make: type) -> None:
    with pytest.raises(ValueError, match="period"):
        make(0)


def test_candle_high_below_low_is_rejected() -> None:
    with pytest.raises(ValueError, match="below"):
        ATR(3).update(9, 10, 9.5)
    with pytest.raises(ValueError, match="below"):
        Donchian(3).update(9, 10)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        SMA(3).update(bad)
    with pytest.raises(ValueError, match="finite"):
        Donchian(3).update(bad, 1.0)
    with pytest.raises(ValueError, match="stddev"):
        Bollinger(3, bad)


# --- bounded state and long-run accuracy ---


def test_state_never_outgrows_the_period_over_a_long_series() -> None:
    rng = random.Random(7)
    period = 50
    sma, ema, channel, bands = SMA(period), EMA(period), Donchian(period), Bollinger(period)
    for step in range(200_000):
        # A sawtooth drift plus noise exercises both rising and falling runs of the deques.
        price = 1000.0 + (step % 997) - 0.5 * (step % 331) + rng.random()
        sma.update(price)
        ema.update(price)
        channel.update(price + 1.0, price - 1.0)
        bands.update(price)
        assert len(sma._window) <= period and len(bands._window) <= period
        assert len(channel._highs) <= period and len(channel._lows) <= period
    assert sma.ready and ema.ready and channel.ready and bands.ready


def test_bollinger_stays_accurate_on_a_tight_market_far_from_where_it_started() -> None:
    # A rally from 60000 to 90000, then a quiet tape moving by fractions of a cent:
    # squares taken relative to the first price would bury that variance in rounding.
    rng = random.Random(11)
    period = 20
    history = [60_000.0 + 0.6 * step + rng.random() for step in range(50_000)]
    history += [90_000.0 + rng.uniform(-0.001, 0.001) for _ in range(1_000)]
    bands = Bollinger(period, 2.0)
    for price in history:
        bands.update(price)
    window = history[-period:]
    assert bands.standard_deviation is not None and bands.middle is not None
    assert math.isclose(bands.standard_deviation, statistics.pstdev(window), rel_tol=1e-6)
    assert math.isclose(bands.middle, statistics.fmean(window), rel_tol=1e-12)
