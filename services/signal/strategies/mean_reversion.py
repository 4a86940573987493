"""Mean reversion: buy an oversold close at or under the lower Bollinger band.

The take profit is the middle band (the mean the price should revert to) and the stop
sits one band half-width (middle - lower) below the entry close. The position exits
when the close reaches the upper band or the RSI turns overbought.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.signal.indicators import RSI, Bollinger
from services.signal.strategies.base import Signal, Strategy, to_price
from shared.candle_files import Candle
from shared.messages import ProposalAction

__all__ = ["MeanReversion"]


@dataclass
class _ProductState:
    rsi: RSI
    bands: Bollinger


class MeanReversion(Strategy):
    """Long when RSI is oversold and the close is at or under the lower band."""

    def __init__(
        self,
        name: str,
        products: Sequence[str],
        granularity_s: int,
        quote_size: Decimal,
        *,
        rsi_period: int = 14,
        oversold: Decimal = Decimal("30"),
        overbought: Decimal = Decimal("70"),
        bollinger_period: int = 20,
        bollinger_stddev: Decimal = Decimal("2"),
    ) -> None:
        super().__init__(name, products, granularity_s, quote_size)
        if oversold >= overbought:
            raise ValueError(
                f"strategy {name!r}: oversold {oversold} must be below overbought {overbought}"
            )
        self.oversold = oversold
        self.overbought = overbought
        self._states = {
            product_id: _ProductState(
                RSI(rsi_period), Bollinger(bollinger_period, float(bollinger_stddev))
            )
            for product_id in self.products
        }

    def _decide(self, product_id: str, candle: Candle, in_position: bool) -> Signal | None:
        state = self._states[product_id]
        rsi = state.rsi.update(candle.close)
        middle = state.bands.update(candle.close)
        lower, upper = state.bands.lower, state.bands.upper
        if rsi is None or middle is None or lower is None or upper is None:
            return None
        close = float(candle.close)
        if in_position:
            return self._exit(product_id, candle, rsi, close >= upper)
        # A band of zero width (flat closes) puts the stop at the entry price: no trade.
        if rsi <= float(self.oversold) and close <= lower < middle:
            stop = close - (middle - lower)
            return self._signal(
                product_id,
                candle,
                ProposalAction.ENTRY,
                f"rsi {rsi:.1f} <= {self.oversold} and close at or under the lower band",
                stop_loss=to_price(stop) if stop > 0 else None,
                take_profit=to_price(middle),
            )
        return None

    def _exit(
        self, product_id: str, candle: Candle, rsi: float, at_upper_band: bool
    ) -> Signal | None:
        if at_upper_band:
            reason = "close at or above the upper band"
        elif rsi >= float(self.overbought):
            reason = f"rsi {rsi:.1f} >= {self.overbought}"
        else:
            return None
        return self._signal(product_id, candle, ProposalAction.EXIT, reason)
