"""Realized PnL per product from recorded fills, at average cost with fees included.

A buy adds its value and its fee to the position's cost; a sell realizes its proceeds,
less its fee, minus the average cost of what it sold. So realized PnL is net of the
fees of every round trip closed, and an open position carries its entry fees in its
cost. A sell larger than what the window's fills bought (a position opened before the
window) realizes nothing for the excess, which is reported as ``unmatched_sold``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from services.calibrate.measure import FillRecord
from shared.money import Rounding, Side, quantize

__all__ = ["ProductPnl", "realized_pnl"]

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass
class ProductPnl:
    product_id: str
    bought: Decimal = ZERO  # base
    sold: Decimal = ZERO  # base
    realized: Decimal = ZERO  # quote, net of the fees of what was sold
    position: Decimal = ZERO  # base still held from the window's buys
    cost: Decimal = ZERO  # quote paid for ``position``, its fees included
    unmatched_sold: Decimal = ZERO  # base sold without a recorded buy before it

    def buy(self, fill: FillRecord) -> None:
        self.bought += fill.size
        self.position += fill.size
        self.cost += fill.price * fill.size + fill.fee

    def sell(self, fill: FillRecord) -> None:
        self.sold += fill.size
        matched = min(fill.size, self.position)
        self.unmatched_sold += fill.size - matched
        if matched == 0:
            return
        cost = self.cost * matched / self.position
        fee = fill.fee * matched / fill.size
        self.realized += fill.price * matched - fee - cost
        self.cost -= cost
        self.position -= matched

    def rounded(self) -> ProductPnl:
        """The same, its quote amounts to the cent (every product here is quoted in USD)."""
        return ProductPnl(
            self.product_id, self.bought, self.sold,
            quantize(self.realized, CENT, Rounding.HALF_EVEN), self.position,
            quantize(self.cost, CENT, Rounding.HALF_EVEN), self.unmatched_sold,
        )  # fmt: skip


def realized_pnl(fills: Iterable[FillRecord]) -> list[ProductPnl]:
    """Per product, in the order the fills are given (oldest first), sorted by product."""
    books: dict[str, ProductPnl] = {}
    for fill in fills:
        book = books.setdefault(fill.product_id, ProductPnl(fill.product_id))
        if fill.side is Side.BUY:
            book.buy(fill)
        else:
            book.sell(fill)
    return [books[product].rounded() for product in sorted(books)]
