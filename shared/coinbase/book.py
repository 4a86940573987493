"""Coinbase's level-2 book and the sequence check that says when to rebuild it.

On the ``level2`` channel (messages arrive as ``l2_data``) a ``snapshot`` event gives
every level, then ``update`` events give ``new_quantity``: the absolute size now resting
at that price, where ``0`` removes the level. A jump in the envelope's ``sequence_num``
means a message was lost: the book can no longer be trusted and must be rebuilt from a
fresh snapshot (resubscribe).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

__all__ = ["BookSide", "L2Book", "SequenceGap", "SequenceTracker"]


class BookSide(StrEnum):
    BID = "bid"
    OFFER = "offer"


class L2Book:
    """One product's price levels; sizes are absolute, never deltas."""

    def __init__(self, product_id: str) -> None:
        self.product_id = product_id
        self._levels: dict[BookSide, dict[Decimal, Decimal]] = {
            BookSide.BID: {},
            BookSide.OFFER: {},
        }
        self.ready = False

    def reset(self) -> None:
        """Forget everything; the book is not ready until the next snapshot."""
        for levels in self._levels.values():
            levels.clear()
        self.ready = False

    def apply_snapshot(self, levels: list[tuple[BookSide, Decimal, Decimal]]) -> None:
        self.reset()
        for side, price, quantity in levels:
            self._set(side, price, quantity)
        self.ready = True

    def apply_update(self, side: BookSide, price: Decimal, new_quantity: Decimal) -> None:
        self._set(side, price, new_quantity)

    def _set(self, side: BookSide, price: Decimal, quantity: Decimal) -> None:
        if price <= 0 or quantity < 0:
            raise ValueError(f"impossible level {side} {quantity} @ {price}")
        if quantity == 0:
            self._levels[side].pop(price, None)
        else:
            self._levels[side][price] = quantity

    def bids(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        """Best ``depth`` bid levels, highest price first."""
        levels = self._levels[BookSide.BID]
        return [(price, levels[price]) for price in heapq.nlargest(depth, levels)]

    def asks(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        """Best ``depth`` ask levels, lowest price first."""
        levels = self._levels[BookSide.OFFER]
        return [(price, levels[price]) for price in heapq.nsmallest(depth, levels)]

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        top = self.bids(1)
        return top[0] if top else None

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        top = self.asks(1)
        return top[0] if top else None

    @property
    def crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]


@dataclass(frozen=True)
class SequenceGap:
    expected: int
    received: int

    @property
    def missing(self) -> int:
        return self.received - self.expected


class SequenceTracker:
    """Checks ``sequence_num`` on one connection's stream of messages."""

    def __init__(self) -> None:
        self._last: int | None = None

    def observe(self, sequence_num: int) -> SequenceGap | None:
        """A gap when messages were skipped; None when in order (or a late duplicate)."""
        last = self._last
        if last is not None and sequence_num <= last:
            return None  # replayed or reordered: already seen, nothing lost
        self._last = sequence_num
        if last is not None and sequence_num != last + 1:
            return SequenceGap(expected=last + 1, received=sequence_num)
        return None

    def reset(self) -> None:
        """A new connection starts its own numbering."""
        self._last = None
