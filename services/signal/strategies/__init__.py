"""The strategies, and how strategies.yaml becomes strategy objects."""

from __future__ import annotations

from services.signal.strategies.base import Signal, Strategy, Tick, to_price
from services.signal.strategies.breakout import Breakout
from services.signal.strategies.ema_cross import EmaCross
from services.signal.strategies.mean_reversion import MeanReversion
from shared.config.models import (
    BreakoutStrategy,
    EmaCrossStrategy,
    MeanReversionStrategy,
    StrategiesConfig,
    StrategyConfig,
)

__all__ = [
    "Breakout",
    "EmaCross",
    "MeanReversion",
    "Signal",
    "Strategy",
    "Tick",
    "build_strategies",
    "to_price",
]


def build_strategies(config: StrategiesConfig) -> list[Strategy]:
    """One strategy object per enabled entry of ``config``, in file order."""
    return [_build(entry) for entry in config.strategies if entry.enabled]


def _build(entry: StrategyConfig) -> Strategy:
    common = (entry.name, entry.products, entry.granularity_s, entry.quote_size_usd)
    match entry:
        case EmaCrossStrategy(params=p):
            return EmaCross(
                *common,
                fast_period=p.fast_period,
                slow_period=p.slow_period,
                atr_period=p.atr_period,
                atr_stop_multiple=p.atr_stop_multiple,
                reward_risk_ratio=p.reward_risk_ratio,
            )
        case MeanReversionStrategy(params=p):
            return MeanReversion(
                *common,
                rsi_period=p.rsi_period,
                oversold=p.oversold,
                overbought=p.overbought,
                bollinger_period=p.bollinger_period,
                bollinger_stddev=p.bollinger_stddev,
            )
        case BreakoutStrategy(params=p):
            return Breakout(
                *common,
                donchian_period=p.donchian_period,
                atr_period=p.atr_period,
                atr_stop_multiple=p.atr_stop_multiple,
                reward_risk_ratio=p.reward_risk_ratio,
            )
    raise TypeError(f"no strategy for config {type(entry).__name__}")
