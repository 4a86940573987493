"""What a strategy is: a pure object fed closed candles that returns signals.

A strategy keeps its own state per product (indicators, whether it holds a position);
it never does I/O and never reads a clock: time arrives inside the candles. The same
object runs in the signal service, in tests and in the backtest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.candle_files import Candle
from shared.messages import ProposalAction
from shared.money import Side

__all__ = ["Signal", "Strategy", "Tick", "to_price"]


def to_price(value: float) -> Decimal:
    """A level computed in float (a stop, a band) as a Decimal of 8 significant digits.

    Deterministic and free of binary noise; risk and execution quantize it to the
    product's price increment.
    """
    return Decimal(f"{value:.8g}")


@dataclass(frozen=True)
class Tick:
    """Best bid and ask of one product at ``time_ns``."""

    product_id: str
    best_bid: Decimal
    best_ask: Decimal
    time_ns: int

    @property
    def mid(self) -> Decimal:
        return (self.best_bid + self.best_ask) / 2


@dataclass(frozen=True)
class Signal:
    """A strategy's wish to enter or exit one product, decided on one closed candle."""

    strategy: str
    product_id: str
    granularity_s: int
    candle_start: int  # UNIX seconds of the candle that decided it
    side: Side
    action: ProposalAction
    quote_size: Decimal  # suggested notional in quote currency
    reference_price: Decimal  # the deciding candle's close
    stop_loss: Decimal | None
    take_profit: Decimal | None
    reason: str

    @property
    def signal_id(self) -> str:
        """Deterministic: the same candle always yields the same id, however often seen."""
        return (
            f"{self.strategy}:{self.product_id}:{self.granularity_s}:"
            f"{self.candle_start}:{self.action.value}"
        )


class Strategy(ABC):
    """Base of every strategy. Long-only spot: an ENTRY buys, an EXIT sells.

    A strategy proposes no second entry for a product while its last entry there is
    pending or open (it has not proposed the exit yet).
    """

    def __init__(
        self, name: str, products: Sequence[str], granularity_s: int, quote_size: Decimal
    ) -> None:
        if not products:
            raise ValueError(f"strategy {name!r} has no products")
        if quote_size <= 0:
            raise ValueError(f"strategy {name!r} needs a positive quote size")
        self.name = name
        self.products = tuple(products)
        self.granularity_s = granularity_s
        self.quote_size = quote_size
        self._in_position = dict.fromkeys(self.products, False)

    def in_position(self, product_id: str) -> bool:
        """True between this strategy's entry and its exit for ``product_id``."""
        return self._in_position[product_id]

    def on_candle(self, product_id: str, candle: Candle) -> Signal | None:
        """Feed the next closed candle of ``product_id``; the signal it causes, if any."""
        if product_id not in self._in_position:
            raise ValueError(f"strategy {self.name!r} does not trade {product_id}")
        signal = self._decide(product_id, candle, self._in_position[product_id])
        if signal is not None:
            self._in_position[product_id] = signal.action is ProposalAction.ENTRY
        return signal

    @abstractmethod
    def _decide(self, product_id: str, candle: Candle, in_position: bool) -> Signal | None:
        """Update the product's indicators with ``candle``; return an entry (when not in
        position) or an exit (when in position), or None."""

    def _signal(
        self,
        product_id: str,
        candle: Candle,
        action: ProposalAction,
        reason: str,
        *,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
    ) -> Signal:
        # A level rounded onto (or past) the close brackets nothing: leave it to risk's own.
        if stop_loss is not None and stop_loss >= candle.close:
            stop_loss = None
        if take_profit is not None and take_profit <= candle.close:
            take_profit = None
        return Signal(
            strategy=self.name,
            product_id=product_id,
            granularity_s=self.granularity_s,
            candle_start=candle.start,
            side=Side.BUY if action is ProposalAction.ENTRY else Side.SELL,
            action=action,
            quote_size=self.quote_size,
            reference_price=candle.close,
            stop_loss=stop_loss,
            take_profit=take_profit,
            reason=reason,
        )
