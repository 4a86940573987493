"""Balances of a trading account: available and on hold, per currency.

A resting order holds what it could spend (a BUY its notional plus the taker fee, a SELL
its base size); each fill releases its share of the hold and settles the trade.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from shared.matching.types import Fill
from shared.money import Side

__all__ = ["Hold", "InsufficientFunds", "Ledger"]


class InsufficientFunds(Exception):
    def __init__(self, currency: str, needed: Decimal, available: Decimal) -> None:
        super().__init__(f"needs {needed} {currency}, {available} available")
        self.currency = currency


@dataclass
class Hold:
    currency: str
    amount: Decimal


class Ledger:
    def __init__(self, balances: dict[str, Decimal]) -> None:
        self._available: defaultdict[str, Decimal] = defaultdict(Decimal, balances)
        self._held: defaultdict[str, Decimal] = defaultdict(Decimal)
        self._holds: dict[str, Hold] = {}

    def currencies(self) -> list[str]:
        return sorted(set(self._available) | set(self._held))

    def available(self, currency: str) -> Decimal:
        return self._available[currency]

    def held(self, currency: str) -> Decimal:
        return self._held[currency]

    def require(self, currency: str, amount: Decimal) -> None:
        """Raise unless ``amount`` of ``currency`` is available."""
        if amount > self._available[currency]:
            raise InsufficientFunds(currency, amount, self._available[currency])

    def hold(self, order_id: str, currency: str, amount: Decimal) -> None:
        self.require(currency, amount)
        self._available[currency] -= amount
        self._held[currency] += amount
        self._holds[order_id] = Hold(currency, amount)

    def release(self, order_id: str, amount: Decimal | None = None) -> None:
        """Give back ``amount`` of an order's hold (all of it when ``None``)."""
        hold = self._holds.get(order_id)
        if hold is None:
            return
        amount = hold.amount if amount is None else min(amount, hold.amount)
        hold.amount -= amount
        self._held[hold.currency] -= amount
        self._available[hold.currency] += amount
        if hold.amount == 0:
            del self._holds[order_id]

    def outstanding_hold(self, order_id: str) -> Decimal:
        hold = self._holds.get(order_id)
        return hold.amount if hold else Decimal(0)

    def settle(self, fill: Fill, base: str, quote: str) -> None:
        """Move the money of one fill (after its hold, if any, was released)."""
        if fill.side is Side.BUY:
            self._available[quote] -= fill.value + fill.commission
            self._available[base] += fill.size
        else:
            self._available[base] -= fill.size
            self._available[quote] += fill.value - fill.commission
