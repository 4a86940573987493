"""Positions, average cost and PnL, built from fills and marked to market.

Accounting is by average cost on signed positions: a fill that reduces a position
realizes PnL on the part it closes at the position's average cost; a fill past zero
opens the other way at its own price. Cash moves by every fill's notional and fee, so
equity = capital + cash + sum(base x mark) = capital + realized - fees + unrealized.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from shared.money import Side

__all__ = ["AppliedFill", "Portfolio", "Position"]

ZERO = Decimal(0)


@dataclass(frozen=True)
class AppliedFill:
    """What the portfolio needs of a fill, whatever it was read from."""

    trade_id: str
    intent_id: str
    product_id: str
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal


@dataclass
class Position:
    product_id: str
    base: Decimal = ZERO
    cost: Decimal = ZERO  # what the base held cost, at average cost; signed like base
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    last_fill_price: Decimal | None = None

    @property
    def average_cost(self) -> Decimal | None:
        return None if self.base == 0 else self.cost / self.base

    def apply(self, side: Side, price: Decimal, size: Decimal, fee: Decimal) -> None:
        signed = size if side is Side.BUY else -size
        if self.base != 0 and (self.base > 0) != (signed > 0):
            closing = min(abs(signed), abs(self.base))
            average = self.cost / self.base
            direction = 1 if self.base > 0 else -1
            self.realized_pnl += (price - average) * closing * direction
            self.cost -= average * closing * direction
            self.base -= closing * direction
            signed += closing * direction
            if self.base == 0:
                self.cost = ZERO
        self.base += signed
        self.cost += price * signed
        self.fees += fee
        self.last_fill_price = price

    def mark_value(self, mark: Decimal | None) -> Decimal:
        """The position at ``mark`` (the last fill price when no mark is known yet)."""
        price = mark if mark is not None else self.last_fill_price
        return ZERO if price is None else self.base * price

    def unrealized_pnl(self, mark: Decimal | None) -> Decimal:
        return self.mark_value(mark) - self.cost


@dataclass
class Portfolio:
    """Every product's position and the cash our fills moved; marks come from ticks."""

    capital: Decimal
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    cash: Decimal = ZERO
    _seen_trades: set[str] = field(default_factory=set)

    def apply(self, fill: AppliedFill) -> bool:
        """Apply ``fill`` once; False when its trade id was already applied."""
        if fill.trade_id in self._seen_trades:
            return False
        self._seen_trades.add(fill.trade_id)
        position = self.positions.setdefault(fill.product_id, Position(fill.product_id))
        position.apply(fill.side, fill.price, fill.size, fill.fee)
        notional = fill.price * fill.size
        self.cash += (notional if fill.side is Side.SELL else -notional) - fill.fee
        return True

    def apply_all(self, fills: Iterable[AppliedFill]) -> None:
        for fill in fills:
            self.apply(fill)

    def mark(self, product_id: str, price: Decimal) -> None:
        self.marks[product_id] = price

    def base(self, product_id: str) -> Decimal:
        position = self.positions.get(product_id)
        return ZERO if position is None else position.base

    def value(self, product_id: str) -> Decimal:
        """The product's position marked to market, in quote currency."""
        position = self.positions.get(product_id)
        return ZERO if position is None else position.mark_value(self.marks.get(product_id))

    def equity(self) -> Decimal:
        """Capital plus everything our fills made or lost, open positions at their marks."""
        return self.capital + self.cash + sum(
            (position.mark_value(self.marks.get(product)) for product, position in
             self.positions.items()), ZERO,
        )  # fmt: skip

    def realized_pnl(self) -> Decimal:
        return sum((position.realized_pnl for position in self.positions.values()), ZERO)

    def unrealized_pnl(self) -> Decimal:
        return sum(
            (p.unrealized_pnl(self.marks.get(product)) for product, p in self.positions.items()),
            ZERO,
        )

    def fees(self) -> Decimal:
        return sum((position.fees for position in self.positions.values()), ZERO)

    def held(self, dust_usd: Decimal) -> list[str]:
        """Products whose long position is worth at least ``dust_usd``: real positions."""
        return sorted(p for p in self.positions if self.value(p) >= dust_usd and self.base(p) > 0)

    def snapshot(self) -> Mapping[str, Position]:
        return dict(self.positions)
