"""Incremental technical indicators: one value (or candle) per update, O(1) each.

Every indicator keeps only what its window needs (running sums, monotonic deques),
so an update never rescans the window. Inputs may be ``Decimal``, ``int`` or
``float``; they become ``float`` at the door because indicator math is volatility
math, not money. ``update`` returns the new value, or ``None`` until the indicator
has seen enough data (``ready``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import SupportsFloat

__all__ = ["ATR", "EMA", "RSI", "SMA", "Bollinger", "Donchian"]


def _to_float(value: SupportsFloat) -> float:
    number = float(value)
    if not math.isfinite(number):
        # One NaN would poison a running sum for the rest of the series.
        raise ValueError(f"indicator input must be finite, got {value!r}")
    return number


def _candle(high: SupportsFloat, low: SupportsFloat) -> tuple[float, float]:
    high_f, low_f = _to_float(high), _to_float(low)
    if high_f < low_f:
        raise ValueError(f"candle high {high!r} is below its low {low!r}")
    return high_f, low_f


class _CompensatedSum:
    """Neumaier summation, so adding and removing values for days does not drift."""

    __slots__ = ("_compensation", "_total")

    def __init__(self) -> None:
        self._total = 0.0
        self._compensation = 0.0

    def add(self, number: float) -> None:
        total = self._total + number
        if abs(self._total) >= abs(number):
            self._compensation += (self._total - total) + number
        else:
            self._compensation += (number - total) + self._total
        self._total = total

    @property
    def value(self) -> float:
        return self._total + self._compensation


class _Indicator:
    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be at least 1, got {period}")
        self._period = period
        self._value: float | None = None

    @property
    def period(self) -> int:
        """Number of values (or candles) in the window."""
        return self._period

    @property
    def value(self) -> float | None:
        """The latest value, or None while warming up."""
        return self._value

    @property
    def ready(self) -> bool:
        """True once enough data has been seen for a value."""
        return self._value is not None


class SMA(_Indicator):
    """Simple moving average of the last ``period`` values; ready after ``period`` values."""

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._window: deque[float] = deque()
        self._sum = _CompensatedSum()

    def update(self, value: SupportsFloat) -> float | None:
        """Add one value; return the average of the window once it is full."""
        number = _to_float(value)
        self._window.append(number)
        self._sum.add(number)
        if len(self._window) > self._period:
            self._sum.add(-self._window.popleft())
        if len(self._window) == self._period:
            self._value = self._sum.value / self._period
        return self._value


class EMA(_Indicator):
    """Exponential moving average, alpha = 2 / (period + 1).

    Seeded with the simple average of the first ``period`` values (the usual
    convention), so it is ready after ``period`` values and never depends on an
    arbitrary first value.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._alpha = 2.0 / (period + 1)
        self._seed_sum = _CompensatedSum()
        self._seen = 0

    def update(self, value: SupportsFloat) -> float | None:
        """Add one value; return the average once seeded."""
        number = _to_float(value)
        if self._value is not None:
            self._value += self._alpha * (number - self._value)
            return self._value
        self._seen += 1
        self._seed_sum.add(number)
        if self._seen == self._period:
            self._value = self._seed_sum.value / self._period
        return self._value


class RSI(_Indicator):
    """Wilder's relative strength index over ``period`` changes, ready after period + 1 values.

    The first average gain and loss are the plain means of the first ``period``
    changes, then ``avg = (avg * (period - 1) + change) / period``. RSI is 100 when the
    average loss is 0, and 50 when both averages are 0 (a flat series has no bias).
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._previous: float | None = None
        self._changes = 0
        self._average_gain = 0.0
        self._average_loss = 0.0

    def update(self, value: SupportsFloat) -> float | None:
        """Add one value; return the RSI once ``period`` changes have been seen."""
        number = _to_float(value)
        previous, self._previous = self._previous, number
        if previous is None:
            return None
        change = number - previous
        gain, loss = max(change, 0.0), max(-change, 0.0)
        period = self._period
        self._changes += 1
        if self._changes <= period:
            # Warm-up: accumulate the plain mean of the first `period` changes.
            self._average_gain += gain / period
            self._average_loss += loss / period
            if self._changes < period:
                return None
        else:
            self._average_gain = (self._average_gain * (period - 1) + gain) / period
            self._average_loss = (self._average_loss * (period - 1) + loss) / period
        total = self._average_gain + self._average_loss
        # gain / total <= 1 exactly in floats, so the scaled RSI never exceeds 100.
        self._value = 50.0 if total == 0.0 else 100.0 * (self._average_gain / total)
        return self._value


class ATR(_Indicator):
    """Wilder's average true range, seeded with the mean of the first ``period`` true ranges.

    True range is max(high - low, |high - previous close|, |low - previous close|);
    the first candle has no previous close, so its true range is high - low.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        self._previous_close: float | None = None
        self._seen = 0
        self._seed_sum = _CompensatedSum()

    def update(self, high: SupportsFloat, low: SupportsFloat, close: SupportsFloat) -> float | None:
        """Add one candle; return the ATR once ``period`` candles have been seen."""
        high_f, low_f = _candle(high, low)
        close_f = _to_float(close)
        true_range = high_f - low_f
        if self._previous_close is not None:
            true_range = max(
                true_range, abs(high_f - self._previous_close), abs(low_f - self._previous_close)
            )
        self._previous_close = close_f
        if self._value is not None:
            self._value = (self._value * (self._period - 1) + true_range) / self._period
            return self._value
        self._seen += 1
        self._seed_sum.add(true_range)
        if self._seen == self._period:
            self._value = self._seed_sum.value / self._period
        return self._value


class Bollinger(_Indicator):
    """Bollinger bands: middle = SMA, bands = middle ± stddev · population standard deviation.

    The variance comes from a running sum and sum of squares of the values minus an
    anchor. The anchor moves to the window's mean each time the window turns over
    (O(period) work every ``period`` updates, so O(1) amortized): squares of values
    near the anchor lose far less to cancellation than squares of raw prices. A
    variance rounded to a tiny negative number is clamped to 0. ``value`` is the middle.
    """

    def __init__(self, period: int, stddev: float = 2.0) -> None:
        super().__init__(period)
        if not (math.isfinite(stddev) and stddev >= 0):
            raise ValueError(f"stddev must be a finite number >= 0, got {stddev}")
        self._multiplier = float(stddev)
        self._window: deque[float] = deque()
        self._anchor: float | None = None
        self._sum = _CompensatedSum()
        self._sum_of_squares = _CompensatedSum()
        self._updates_since_anchor = 0
        self._deviation: float | None = None

    @property
    def middle(self) -> float | None:
        """Simple moving average of the window."""
        return self._value

    @property
    def standard_deviation(self) -> float | None:
        """Population standard deviation of the window."""
        return self._deviation

    @property
    def upper(self) -> float | None:
        """Middle plus ``stddev`` standard deviations."""
        if self._value is None or self._deviation is None:
            return None
        return self._value + self._multiplier * self._deviation

    @property
    def lower(self) -> float | None:
        """Middle minus ``stddev`` standard deviations."""
        if self._value is None or self._deviation is None:
            return None
        return self._value - self._multiplier * self._deviation

    def update(self, value: SupportsFloat) -> float | None:
        """Add one value; return the middle band once the window is full."""
        number = _to_float(value)
        if self._anchor is None:
            self._anchor = number
        self._window.append(number)
        self._accumulate(number, 1.0)
        if len(self._window) > self._period:
            self._accumulate(self._window.popleft(), -1.0)
        if len(self._window) < self._period:
            return None
        self._updates_since_anchor += 1
        if self._updates_since_anchor >= self._period:
            self._reanchor()
        mean_offset = self._sum.value / self._period
        variance = self._sum_of_squares.value / self._period - mean_offset * mean_offset
        self._deviation = math.sqrt(max(variance, 0.0))
        self._value = self._anchor + mean_offset
        return self._value

    def _accumulate(self, number: float, sign: float) -> None:
        assert self._anchor is not None
        offset = number - self._anchor
        self._sum.add(sign * offset)
        self._sum_of_squares.add(sign * offset * offset)

    def _reanchor(self) -> None:
        self._anchor = math.fsum(self._window) / len(self._window)
        self._sum, self._sum_of_squares = _CompensatedSum(), _CompensatedSum()
        for number in self._window:
            self._accumulate(number, 1.0)
        self._updates_since_anchor = 0


class Donchian(_Indicator):
    """Donchian channel: highest high and lowest low of the last ``period`` candles.

    Monotonic deques make each update O(1) amortized. ``value`` is the midline.
    ``previous_upper`` / ``previous_lower`` hold the channel as it stood before the
    latest candle (the prior ``period`` candles), which is what a breakout compares the
    new close against; they are ready one candle after the channel itself.
    """

    def __init__(self, period: int) -> None:
        super().__init__(period)
        # (candle index, price); highs decrease and lows increase from front to back.
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()
        self._seen = 0
        self._upper: float | None = None
        self._lower: float | None = None
        self._previous_upper: float | None = None
        self._previous_lower: float | None = None

    @property
    def upper(self) -> float | None:
        """Highest high of the last ``period`` candles, including the latest."""
        return self._upper

    @property
    def lower(self) -> float | None:
        """Lowest low of the last ``period`` candles, including the latest."""
        return self._lower

    @property
    def previous_upper(self) -> float | None:
        """Upper band before the latest candle, or None until period + 1 candles."""
        return self._previous_upper

    @property
    def previous_lower(self) -> float | None:
        """Lower band before the latest candle, or None until period + 1 candles."""
        return self._previous_lower

    def update(self, high: SupportsFloat, low: SupportsFloat) -> float | None:
        """Add one candle; return the midline once ``period`` candles have been seen."""
        high_f, low_f = _candle(high, low)
        self._previous_upper, self._previous_lower = self._upper, self._lower
        index = self._seen
        self._seen += 1
        oldest_kept = index - self._period + 1
        # Evict before appending so neither deque ever holds more than `period` entries.
        for extremes in (self._highs, self._lows):
            while extremes and extremes[0][0] < oldest_kept:
                extremes.popleft()
        while self._highs and self._highs[-1][1] <= high_f:
            self._highs.pop()
        self._highs.append((index, high_f))
        while self._lows and self._lows[-1][1] >= low_f:
            self._lows.pop()
        self._lows.append((index, low_f))
        if self._seen >= self._period:
            self._upper, self._lower = self._highs[0][1], self._lows[0][1]
            self._value = (self._upper + self._lower) / 2
        return self._value
