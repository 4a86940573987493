"""Round trips from fills: a trade opens with the first buy while flat and closes at flat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.backtest.report import ClosedTrade
from shared.messages import OrderFilled
from shared.money import Side

__all__ = ["TradeBook"]

ZERO = Decimal(0)


@dataclass
class _Open:
    strategy: str
    entry_time: datetime
    bought: Decimal = ZERO
    bought_quote: Decimal = ZERO
    sold: Decimal = ZERO
    sold_quote: Decimal = ZERO
    fees: Decimal = ZERO
    slippage: Decimal = ZERO
    last_reason: str = ""

    @property
    def base(self) -> Decimal:
        return self.bought - self.sold


class TradeBook:
    """Follows every product's position through its fills and closes trades at flat.

    ``exit_reasons`` maps an exit intent's id to the signal's reason; other sells are
    named by the first part of their intent id (``stop_loss``, ``take_profit``, ...).
    """

    def __init__(
        self, base_increments: Mapping[str, Decimal], exit_reasons: Mapping[str, str]
    ) -> None:
        self._increments = base_increments
        self._exit_reasons = exit_reasons
        self._open: dict[str, _Open] = {}

    def exposed(self) -> bool:
        return bool(self._open)

    def on_fill(self, fill: OrderFilled) -> ClosedTrade | None:
        """Apply one fill; the trade it closes, if it does."""
        trade = self._open.get(fill.product_id)
        if trade is None:
            if fill.side is Side.SELL:
                return None  # selling what no trade of this run bought
            trade = _Open(fill.intent_id.split(":", 1)[0], fill.filled_at)
            self._open[fill.product_id] = trade
        value = fill.price * fill.size
        worse = (
            fill.price - fill.arrival_mid
            if fill.side is Side.BUY
            else fill.arrival_mid - fill.price
        )
        trade.slippage += worse * fill.size
        trade.fees += fill.fee
        if fill.side is Side.BUY:
            trade.bought += fill.size
            trade.bought_quote += value
            return None
        trade.sold += fill.size
        trade.sold_quote += value
        trade.last_reason = self._exit_reasons.get(fill.intent_id, fill.intent_id.split(":", 1)[0])
        if trade.base >= self._increments.get(fill.product_id, ZERO) and trade.base > 0:
            return None
        del self._open[fill.product_id]
        return _closed(fill.product_id, trade, fill.filled_at, trade.sold_quote, trade.last_reason)

    def close_open(self, marks: Mapping[str, Decimal], now: datetime) -> list[ClosedTrade]:
        """Trades still open at the end of the data, valued at the last mid (not sold)."""
        closed = []
        for product_id, trade in sorted(self._open.items()):
            mark = marks.get(product_id, ZERO)
            proceeds = trade.sold_quote + trade.base * mark
            closed.append(_closed(product_id, trade, now, proceeds, "end_of_data"))
        self._open.clear()
        return closed


def _closed(
    product_id: str, trade: _Open, exit_time: datetime, proceeds: Decimal, reason: str
) -> ClosedTrade:
    sold = trade.bought if reason == "end_of_data" else trade.sold
    return ClosedTrade(
        product_id=product_id,
        strategy=trade.strategy,
        entry_time=trade.entry_time,
        exit_time=exit_time,
        size=trade.bought,
        entry_price=trade.bought_quote / trade.bought,
        exit_price=proceeds / sold if sold else ZERO,
        fees=trade.fees,
        slippage_cost=trade.slippage,
        pnl=proceeds - trade.bought_quote - trade.fees,
        exit_reason=reason,
    )
