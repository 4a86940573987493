"""The live market of one product: a mid path, a book shaped around it, and trade prints.

``SyntheticMarket`` walks the mid as geometric Brownian motion; ``ReplayMarket`` follows
recorded candles. Both shape the book with :func:`shape_book`, so a strategy meets one
kind of book either way. Floats carry the mid path and the noise only; every price and
size leaves this module as a Decimal on the product's increments.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from services.exchange_sim.candles import MINUTE, SECONDS_PER_YEAR, Candle
from services.exchange_sim.history import history_candles
from shared.candle_files import candle_path
from shared.clock import ensure_utc
from shared.money import Side

__all__ = [
    "Level",
    "MarketProfile",
    "MarketSource",
    "MarketStep",
    "Print",
    "ReplayMarket",
    "SyntheticMarket",
    "candle_path",
    "history_candles",
    "shape_book",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WALK_ONE, _WALK_TWO = 0.08, 0.02  # chance that an aggressor walks one / two levels deeper

Level = tuple[Decimal, Decimal]  # (price, size)


@dataclass(frozen=True)
class MarketProfile:
    """How one product trades in the simulation."""

    product_id: str
    price_increment: Decimal
    base_increment: Decimal
    start_price: Decimal
    annual_volatility: float = 0.6
    spread_bps: float = 2.0
    depth_levels: int = 20
    level_notional: Decimal = Decimal("25000")
    trades_per_minute: float = 30.0
    mean_trade_notional: Decimal = Decimal("2000")

    def __post_init__(self) -> None:
        positive = (self.price_increment, self.base_increment, self.start_price)
        if min(positive) <= 0 or self.level_notional <= 0 or self.mean_trade_notional <= 0:
            raise ValueError(f"{self.product_id}: increments, prices and notionals must be > 0")
        if self.depth_levels < 1 or self.spread_bps < 0 or self.trades_per_minute < 0:
            raise ValueError(f"{self.product_id}: depth >= 1, spread and trade rate >= 0")


@dataclass(frozen=True)
class Print:
    """One trade; ``side`` is the aggressor's, as in Coinbase's market_trades."""

    time: datetime
    price: Decimal
    size: Decimal
    side: Side


@dataclass(frozen=True)
class MarketStep:
    """The market at ``time``: full depth best first, and the prints since the last step."""

    time: datetime
    bids: list[Level]
    asks: list[Level]
    prints: list[Print]


class MarketSource(Protocol):
    profile: MarketProfile

    def advance(self, now: datetime) -> MarketStep:
        """Move to ``now``; an earlier ``now`` than the last one is an error."""
        ...


def shape_book(
    profile: MarketProfile, mid: float, rng: random.Random, depth: int | None = None
) -> tuple[list[Level], list[Level]]:
    """Bids and asks around ``mid``: noisy spread, at least one tick wide, never crossed."""
    tick = float(profile.price_increment)
    levels = profile.depth_levels if depth is None else min(depth, profile.depth_levels)
    half_spread = mid * profile.spread_bps / 20_000 * rng.uniform(0.75, 1.25)
    bid_ticks = max(1, math.floor((mid - half_spread) / tick))
    ask_ticks = max(bid_ticks + 1, math.ceil((mid + half_spread) / tick))
    gap_ticks = max(1.0, 2 * half_spread / tick)  # levels sit about a spread apart
    bids = _book_side(profile, bid_ticks, -1, levels, gap_ticks, rng)
    asks = _book_side(profile, ask_ticks, 1, levels, gap_ticks, rng)
    return bids, asks


def _book_side(
    profile: MarketProfile,
    touch_ticks: int,
    direction: int,
    levels: int,
    gap_ticks: float,
    rng: random.Random,
) -> list[Level]:
    side: list[Level] = []
    ticks = touch_ticks
    for distance in range(levels):
        if ticks < 1:
            break  # a bid cannot rest at or below zero
        price = Decimal(ticks) * profile.price_increment
        notional = float(profile.level_notional) * (1 + 0.1 * distance)
        notional *= math.exp(rng.gauss(-0.045, 0.3))  # lognormal with mean one
        side.append((price, _to_size(profile, _units(profile, notional, float(price)))))
        ticks += direction * max(1, round(gap_ticks * rng.uniform(0.5, 1.5)))
    return side


def _units(profile: MarketProfile, notional: float, price: float) -> int:
    """Whole base increments worth ``notional`` at ``price``, at least one."""
    return max(1, round(notional / price / float(profile.base_increment)))


def _to_size(profile: MarketProfile, units: int) -> Decimal:
    return Decimal(units) * profile.base_increment


def _aggressor_prints(
    profile: MarketProfile,
    time: datetime,
    mid: float,
    side: Side,
    units: int,
    rng: random.Random,
    bounds: tuple[Decimal, Decimal] | None = None,
) -> list[Print]:
    """One aggressive order of ``units``: at the touch, sometimes walking a level or two."""
    draw = rng.random()
    walked = 2 if draw < _WALK_TWO else 1 if draw < _WALK_TWO + _WALK_ONE else 0
    bids, asks = shape_book(profile, mid, rng, depth=min(walked + 1, units))
    book = asks if side is Side.BUY else bids
    share = units // len(book)
    parts = [units - share * (len(book) - 1)] + [share] * (len(book) - 1)
    prints = []
    for (price, _), part in zip(book, parts, strict=True):
        if bounds is not None:
            price = min(max(price, bounds[0]), bounds[1])
        prints.append(Print(time, price, _to_size(profile, part), side))
    return prints


def _forward(current: datetime, now: datetime) -> datetime:
    now = ensure_utc(now)
    if now < current:
        raise ValueError(f"market time runs forward: {now.isoformat()} < {current.isoformat()}")
    return now


def _random_side(rng: random.Random) -> Side:
    return Side.BUY if rng.random() < 0.5 else Side.SELL


class SyntheticMarket:
    """A seeded random market: GBM mid, a shaped book and Poisson prints at the touch.

    The same seed and the same sequence of ``advance`` times give the same steps.
    """

    def __init__(self, profile: MarketProfile, seed: int, start: datetime) -> None:
        self.profile = profile
        self._rng = random.Random(seed)
        self._time = ensure_utc(start)
        self._mid = float(profile.start_price)
        self._rate = profile.trades_per_minute / MINUTE  # prints per second
        self._next_print = self._time + self._interarrival() if self._rate > 0 else None

    @property
    def time(self) -> datetime:
        return self._time

    @property
    def mid(self) -> Decimal:
        """The current mid, unrounded."""
        return Decimal(repr(self._mid))

    def advance(self, now: datetime) -> MarketStep:
        """Walk to ``now``, printing the trades due on the way."""
        now = _forward(self._time, now)
        prints: list[Print] = []
        while self._next_print is not None and self._next_print <= now:
            self._walk_to(self._next_print)
            notional = self._rng.expovariate(1 / float(self.profile.mean_trade_notional))
            units = _units(self.profile, notional, self._mid)
            side = _random_side(self._rng)
            prints += _aggressor_prints(self.profile, self._time, self._mid, side, units, self._rng)
            self._next_print += self._interarrival()
        self._walk_to(now)
        bids, asks = shape_book(self.profile, self._mid, self._rng)
        return MarketStep(now, bids, asks, prints)

    def _walk_to(self, moment: datetime) -> None:
        years = (moment - self._time).total_seconds() / SECONDS_PER_YEAR
        if years > 0:
            sigma = self.profile.annual_volatility
            shock = sigma * math.sqrt(years) * self._rng.gauss(0.0, 1.0)
            self._mid *= math.exp(shock - 0.5 * sigma * sigma * years)  # driftless in price
        self._time = moment

    def _interarrival(self) -> timedelta:
        # At least a microsecond, so every print falls strictly after the one before; at
        # most a year, so a vanishing rate cannot overflow the calendar.
        seconds = min(self._rng.expovariate(self._rate), SECONDS_PER_YEAR)
        return max(timedelta(microseconds=1), timedelta(seconds=seconds))


def _path_price(candle: Candle, position: float) -> Decimal:
    """Mid at ``position`` thirds into the candle, linear between waypoints."""
    points = candle_path(candle)
    leg = min(int(position), 2)
    within = position - leg
    if within <= 0:
        return points[leg]
    return points[leg] + (points[leg + 1] - points[leg]) * Decimal(repr(within))


class ReplayMarket:
    """Recorded candles replayed in market time.

    In each candle the mid runs open -> low -> high -> close (open -> high -> low -> close
    when it closes down), the extremes at one and two thirds of its duration. Prints share
    out the candle's volume over its duration and stay inside its [low, high]. Each
    candle's prints come from their own seeded stream, so they do not depend on how the
    caller steps; volume below one base increment is not printed. In a gap between
    candles and after the last one the mid holds at the last close and nothing prints; a
    time before the first candle is an error. ``advance`` takes market time: mapping wall
    time onto it, speed-up included, is the caller's job.
    """

    def __init__(
        self, profile: MarketProfile, candles: Sequence[Candle], granularity_s: int, seed: int
    ) -> None:
        ordered = sorted(candles, key=lambda candle: candle.start)
        if granularity_s < 1 or not ordered:
            raise ValueError("replay needs at least one candle and a positive granularity")
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after.start < before.start + granularity_s:
                raise ValueError(f"candles at {before.start} and {after.start} overlap")
        self.profile = profile
        self._candles = ordered
        self._starts = [candle.start for candle in ordered]
        self._span = granularity_s
        self._seed = seed
        self._rng = random.Random(seed)
        self._time = self.first_time
        self._cached: tuple[int, list[Print]] | None = None

    @property
    def first_time(self) -> datetime:
        return _EPOCH + timedelta(seconds=self._starts[0])

    @property
    def last_time(self) -> datetime:
        """End of the last candle."""
        return _EPOCH + timedelta(seconds=self._starts[-1] + self._span)

    def mid_at(self, moment: datetime) -> Decimal:
        """Mid on the candle path at ``moment``."""
        index, offset = self._locate(moment)
        candle = self._candles[index]
        if offset >= self._span:
            return candle.close
        return _path_price(candle, offset * 3 / self._span)

    def advance(self, now: datetime) -> MarketStep:
        """Move to market time ``now``, returning the prints since the previous step."""
        last_index, _ = self._locate(now)
        now = _forward(self._time, now)
        first_index, _ = self._locate(self._time)
        prints: list[Print] = []
        for index in range(first_index, last_index + 1):
            prints += [p for p in self._candle_prints(index) if self._time < p.time <= now]
        self._time = now
        bids, asks = shape_book(self.profile, float(self.mid_at(now)), self._rng)
        return MarketStep(now, bids, asks, prints)

    def _locate(self, moment: datetime) -> tuple[int, float]:
        """Index of the candle starting at or before ``moment``, and seconds into it."""
        moment = ensure_utc(moment)
        if moment < self.first_time:
            raise ValueError(
                f"{moment.isoformat()} is before the first candle ({self.first_time.isoformat()})"
            )
        index = bisect.bisect_right(self._starts, (moment - _EPOCH) // timedelta(seconds=1)) - 1
        offset = moment - _EPOCH - timedelta(seconds=self._starts[index])
        return index, offset.total_seconds()

    def _candle_prints(self, index: int) -> list[Print]:
        if self._cached is None or self._cached[0] != index:
            candle = self._candles[index]
            rng = random.Random(f"{self._seed}/{candle.start}")
            self._cached = index, _replay_prints(self.profile, candle, self._span, rng)
        return self._cached[1]


def _replay_prints(
    profile: MarketProfile, candle: Candle, span: int, rng: random.Random
) -> list[Print]:
    """Prints sharing out the candle's volume, Poisson in count, uniform in time."""
    total = int(candle.volume / profile.base_increment)
    if total <= 0:
        return []
    mean_units = _units(profile, float(profile.mean_trade_notional), float(candle.close))
    cap = max(1, int(10 * profile.trades_per_minute * span / MINUTE))
    count = min(total, cap, max(1, _poisson(total / mean_units, rng)))
    offsets = sorted(rng.randint(1, span * 1_000_000 - 1) for _ in range(count))  # microseconds
    start = _EPOCH + timedelta(seconds=candle.start)
    prints: list[Print] = []
    for offset, units in zip(offsets, _share_out(total, count, rng), strict=True):
        if units == 0:
            continue
        mid = float(_path_price(candle, offset * 3 / (span * 1_000_000)))
        time = start + timedelta(microseconds=offset)
        side = _random_side(rng)
        bounds = (candle.low, candle.high)
        prints += _aggressor_prints(profile, time, mid, side, units, rng, bounds)
    return prints


def _poisson(mean: float, rng: random.Random) -> int:
    if mean > 50:  # the normal approximation is close here and costs one draw
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _share_out(total: int, count: int, rng: random.Random) -> list[int]:
    """``total`` units in ``count`` exponential-ish shares that add up exactly."""
    weights = [1 + int(rng.expovariate(1.0) * 2**20) for _ in range(count)]
    whole = sum(weights)
    shares = [total * weight // whole for weight in weights]
    by_remainder = sorted(range(count), key=lambda i: total * weights[i] % whole, reverse=True)
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares
