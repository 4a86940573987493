"""Synthetic candle history, so a venue with no recorded data can still serve backfill."""

from __future__ import annotations

import math
import random
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from services.exchange_sim.candles import MINUTE, SECONDS_PER_YEAR, Candle, minute_start

if TYPE_CHECKING:
    from services.exchange_sim.market import MarketProfile

__all__ = ["history_candles"]

_HISTORY_SUBSTEP = 10  # seconds; six points a minute give each candle a plausible range


def history_candles(profile: MarketProfile, seed: int, end: datetime, minutes: int) -> list[Candle]:
    """One-minute candles for the ``minutes`` whole minutes before ``end``'s minute.

    A seeded GBM walk backwards from ``start_price``, so the last close is the start price
    (on the tick grid) and a market starting at ``end`` carries on where history ends.
    """
    if minutes < 0:
        raise ValueError(f"minutes must not be negative, got {minutes}")
    rng = random.Random(f"history/{seed}")
    step_sigma = profile.annual_volatility * math.sqrt(_HISTORY_SUBSTEP / SECONDS_PER_YEAR)
    first_start = minute_start(end) - MINUTE * minutes
    price = float(profile.start_price)
    candles: list[Candle] = []
    for index in reversed(range(minutes)):
        path = [price]
        for _ in range(MINUTE // _HISTORY_SUBSTEP):
            price *= math.exp(step_sigma * rng.gauss(0.0, 1.0))
            path.append(price)
        path.reverse()  # walked backwards in time; reversed, it runs open to close
        candles.append(_history_candle(profile, first_start + MINUTE * index, path, rng))
    candles.reverse()
    return candles


def _history_candle(
    profile: MarketProfile, start: int, path: list[float], rng: random.Random
) -> Candle:
    tick = float(profile.price_increment)
    ticks = [max(1, round(point / tick)) for point in path]
    notional = profile.trades_per_minute * float(profile.mean_trade_notional)
    notional *= math.exp(rng.gauss(-0.125, 0.5))  # lognormal with mean one
    units = round(notional / path[-1] / float(profile.base_increment))
    return Candle(
        start=start,
        low=Decimal(min(ticks)) * profile.price_increment,
        high=Decimal(max(ticks)) * profile.price_increment,
        open=Decimal(ticks[0]) * profile.price_increment,
        close=Decimal(ticks[-1]) * profile.price_increment,
        volume=Decimal(units) * profile.base_increment,
    )
