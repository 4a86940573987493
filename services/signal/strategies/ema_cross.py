"""Trend following: enter when the fast EMA crosses above the slow one, exit on the cross back.

The stop sits ``atr_stop_multiple`` ATRs below the entry close and the take profit
``reward_risk_ratio`` stop distances above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.signal.indicators import ATR, EMA
from services.signal.strategies.base import Signal, Strategy, to_price
from shared.candle_files import Candle
from shared.messages import ProposalAction

__all__ = ["EmaCross", "atr_bracket"]


def atr_bracket(
    close: float, atr: float, stop_multiple: float, reward_risk_ratio: float
) -> tuple[Decimal | None, Decimal]:
    """Stop loss and take profit around ``close``, the stop ``stop_multiple`` ATRs below.

    A stop at or below zero is no stop at all (a price is never negative), so it is None.
    """
    distance = stop_multiple * atr
    stop = close - distance
    stop_loss = to_price(stop) if stop > 0 else None
    return stop_loss, to_price(close + reward_risk_ratio * distance)


@dataclass
class _ProductState:
    fast: EMA
    slow: EMA
    atr: ATR
    # Fast and slow EMA of the previous candle, once both were ready.
    previous: tuple[float, float] | None = None


class EmaCross(Strategy):
    """Long on a fast-over-slow EMA cross, out on the opposite cross."""

    def __init__(
        self,
        name: str,
        products: Sequence[str],
        granularity_s: int,
        quote_size: Decimal,
        *,
        fast_period: int,
        slow_period: int,
        atr_period: int = 14,
        atr_stop_multiple: Decimal = Decimal("2"),
        reward_risk_ratio: Decimal = Decimal("2"),
    ) -> None:
        super().__init__(name, products, granularity_s, quote_size)
        if fast_period >= slow_period:
            raise ValueError(
                f"strategy {name!r}: fast_period {fast_period} must be below "
                f"slow_period {slow_period}"
            )
        self.fast_period = fast_period
        self.slow_period = slow_period
        self.atr_stop_multiple = atr_stop_multiple
        self.reward_risk_ratio = reward_risk_ratio
        self._states = {
            product_id: _ProductState(EMA(fast_period), EMA(slow_period), ATR(atr_period))
            for product_id in self.products
        }

    def _decide(self, product_id: str, candle: Candle, in_position: bool) -> Signal | None:
        state = self._states[product_id]
        fast = state.fast.update(candle.close)
        slow = state.slow.update(candle.close)
        atr = state.atr.update(candle.high, candle.low, candle.close)
        if fast is None or slow is None:
            return None
        previous, state.previous = state.previous, (fast, slow)
        if previous is None:
            return None  # no relation yet to have crossed from
        previous_fast, previous_slow = previous
        if not in_position and previous_fast <= previous_slow and fast > slow:
            if atr is None:
                return None
            stop_loss, take_profit = atr_bracket(
                float(candle.close),
                atr,
                float(self.atr_stop_multiple),
                float(self.reward_risk_ratio),
            )
            return self._signal(
                product_id,
                candle,
                ProposalAction.ENTRY,
                f"ema {self.fast_period} crossed above ema {self.slow_period}",
                stop_loss=stop_loss,
                take_profit=take_profit,
            )
        if in_position and previous_fast >= previous_slow and fast < slow:
            return self._signal(
                product_id,
                candle,
                ProposalAction.EXIT,
                f"ema {self.fast_period} crossed below ema {self.slow_period}",
            )
        return None
