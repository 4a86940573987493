"""Channel breakout: buy a close above the highest high of the previous N candles.

The channel compared against excludes the deciding candle, or a close could never be
above it. The stop sits ``atr_stop_multiple`` ATRs below the entry close, the take
profit ``reward_risk_ratio`` stop distances above it; the position exits on a close
below the lowest low of the previous N candles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.signal.indicators import ATR, Donchian
from services.signal.strategies.base import Signal, Strategy
from services.signal.strategies.ema_cross import atr_bracket
from shared.candle_files import Candle
from shared.messages import ProposalAction

__all__ = ["Breakout"]


@dataclass
class _ProductState:
    channel: Donchian
    atr: ATR


class Breakout(Strategy):
    """Long on a close above the prior Donchian channel, out on a close below it."""

    def __init__(
        self,
        name: str,
        products: Sequence[str],
        granularity_s: int,
        quote_size: Decimal,
        *,
        donchian_period: int = 20,
        atr_period: int = 14,
        atr_stop_multiple: Decimal = Decimal("2"),
        reward_risk_ratio: Decimal = Decimal("2"),
    ) -> None:
        super().__init__(name, products, granularity_s, quote_size)
        self.donchian_period = donchian_period
        self.atr_stop_multiple = atr_stop_multiple
        self.reward_risk_ratio = reward_risk_ratio
        self._states = {
            product_id: _ProductState(Donchian(donchian_period), ATR(atr_period))
            for product_id in self.products
        }

    def _decide(self, product_id: str, candle: Candle, in_position: bool) -> Signal | None:
        state = self._states[product_id]
        state.channel.update(candle.high, candle.low)
        atr = state.atr.update(candle.high, candle.low, candle.close)
        upper, lower = state.channel.previous_upper, state.channel.previous_lower
        if upper is None or lower is None:
            return None
        close = float(candle.close)
        if in_position:
            if close >= lower:
                return None
            return self._signal(
                product_id,
                candle,
                ProposalAction.EXIT,
                f"close below the {self.donchian_period}-candle low",
            )
        if close <= upper or atr is None:
            return None
        stop_loss, take_profit = atr_bracket(
            close, atr, float(self.atr_stop_multiple), float(self.reward_risk_ratio)
        )
        return self._signal(
            product_id,
            candle,
            ProposalAction.ENTRY,
            f"close above the {self.donchian_period}-candle high",
            stop_loss=stop_loss,
            take_profit=take_profit,
        )
