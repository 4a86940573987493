"""The venue port: what execution asks of a venue, and what a venue reports back.

Two venues implement it: :class:`services.execution.paper.PaperVenue` (the matching engine
on the live book, PAPER) and :class:`services.execution.coinbase_venue.CoinbaseVenue`
(Coinbase Advanced Trade through the rate limiter, LIVE). Every report names the order by
our ``client_order_id``; the service hands it to that order's intent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from services.execution.orders import VenueCommand
from shared.messages import Liquidity, OrderStatus

__all__ = [
    "ReconcileIncomplete", "Venue", "VenueAccepted", "VenueDone", "VenueFill", "VenueLookup",
    "VenueReport", "WorkingOrder",
]  # fmt: skip


@dataclass(frozen=True)
class VenueAccepted:
    """The venue holds the order under ``venue_order_id``."""

    client_order_id: str
    venue_order_id: str


@dataclass(frozen=True)
class VenueFill:
    """One fill, with the venue's own trade id, fee and liquidity."""

    client_order_id: str
    trade_id: str
    price: Decimal
    size: Decimal
    fee: Decimal
    liquidity: Liquidity
    time: datetime


@dataclass(frozen=True)
class VenueDone:
    """The order ended: FILLED, CANCELLED, EXPIRED or REJECTED, with the venue's reason."""

    client_order_id: str
    status: OrderStatus
    reason: str = ""


@dataclass(frozen=True)
class VenueLookup:
    """The answer to a lookup by client order id: whether the venue has the order at all."""

    client_order_id: str
    found: bool


VenueReport = VenueAccepted | VenueFill | VenueDone | VenueLookup


@dataclass(frozen=True)
class WorkingOrder:
    """An order execution still follows: sent and not yet known to have ended."""

    client_order_id: str
    product_id: str
    venue_order_id: str | None
    sent_at: datetime
    filled_size: Decimal = Decimal(0)


class Venue(Protocol):
    """Where orders go. Reports come back from :meth:`send` and :meth:`poll`."""

    name: str
    """The venue's name in the ``fills`` table (its trade ids are unique per venue)."""

    async def send(self, command: VenueCommand, now: datetime) -> list[VenueReport]:
        """Place, cancel or look up one order; what the venue answered at once.

        An answer that never came (a timeout) reports nothing: the order stays PENDING
        and the pending TTL's lookup resolves it. Never raises for a venue refusal.
        """
        ...

    async def poll(self, working: Sequence[WorkingOrder], now: datetime) -> list[VenueReport]:
        """What happened to ``working`` orders since the last poll: fills and ends."""
        ...

    async def reconcile(self, working: Sequence[WorkingOrder], now: datetime) -> list[VenueReport]:
        """The fate of ``working`` orders, whole: each one's every fill and its end, however
        much of it was reported before (the caller drops fills it recorded). On start, for
        what a previous run left working; while running, for an intent whose record fell
        behind. Within a request budget.

        Raises :class:`ReconcileIncomplete` when the budget ran out first.
        """
        ...


class ReconcileIncomplete(Exception):
    """Start-up reconciliation ran out of its request budget before it had every answer."""
