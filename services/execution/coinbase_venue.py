"""The LIVE venue: Coinbase Advanced Trade through :class:`shared.coinbase.rest.CoinbaseRest`.

- ``send`` places an order (the client already resolves a lost answer by looking the
  order up by client order id and resending the same request), cancels one, or looks one
  up by client order id. An answer that never came reports nothing: the state machine's
  pending TTL asks for a lookup. A refusal is a ``VenueDone(REJECTED)`` with Coinbase's
  reason. A cancel is confirmed by reading the order back, since it can race a fill.
- ``poll`` reads the status of the working orders the venue knows (50 ids a request),
  then the fills of those whose fill count or size grew, and reports each trade id once,
  fee from ``commission`` and liquidity from ``liquidity_indicator``; an order's fills
  always come before its ``VenueDone``.
- ``reconcile`` does the same on start for what a previous run left working, looking up
  by client order id (one request per product) the orders that never got a venue id,
  within a request budget; it raises :class:`ReconcileIncomplete` when that runs out.

Every read finishes before any state changes, so a request that fails halfway loses no
report: the next poll asks again. 429s are waited out by the client, never here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from services.execution.orders import CancelVenueOrder, LookupVenueOrder, VenueCommand
from services.execution.venues import (
    ReconcileIncomplete,
    VenueAccepted,
    VenueDone,
    VenueFill,
    VenueLookup,
    VenueReport,
    WorkingOrder,
)
from shared.coinbase import models
from shared.coinbase.errors import (
    CoinbaseError,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    VenueUnreachable,
)
from shared.coinbase.rest import CoinbaseRest
from shared.logging import get_logger
from shared.matching.types import OrderRequest
from shared.messages import Liquidity, OrderStatus

__all__ = ["CoinbaseVenue"]

BATCH = 50  # order ids per status or fills request
LOOKUP_MARGIN = timedelta(minutes=5)  # clock skew between us and the venue
_TRANSIENT = (OutcomeUnknown, VenueUnreachable, RateLimited)
_DONE = {
    "FILLED": OrderStatus.FILLED, "CANCELLED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.EXPIRED, "FAILED": OrderStatus.REJECTED,
}  # fmt: skip
_log = get_logger("services.execution.coinbase_venue")


class _Budget:
    """Counts REST requests; ``None`` is no limit."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.used = limit, 0

    def spend(self) -> None:
        if self.limit is not None and self.used >= self.limit:
            raise ReconcileIncomplete(f"request budget of {self.limit} spent before the end")
        self.used += 1


class CoinbaseVenue:
    """Orders on Coinbase, followed by polling its order and fill endpoints."""

    def __init__(
        self, rest: CoinbaseRest, *, reconcile_budget: int = 50, poll_interval_s: float = 1.0,
        name: str = "coinbase",
    ) -> None:  # fmt: skip
        self.name = name
        self._rest = rest
        self._reconcile_budget = reconcile_budget
        self._poll_interval = timedelta(seconds=poll_interval_s)
        self._last_poll: datetime | None = None
        self._venue_ids: dict[str, str] = {}  # client order id -> venue order id
        self._products: dict[str, str] = {}
        self._sent_at: dict[str, datetime] = {}
        self._trades: defaultdict[str, set[str]] = defaultdict(set)  # reported trade ids
        self._filled: defaultdict[str, Decimal] = defaultdict(Decimal)  # reported base size
        self._ended: set[str] = set()  # client order ids whose VenueDone went out

    # --- the Venue protocol ------------------------------------------------------------

    async def send(self, command: VenueCommand, now: datetime) -> list[VenueReport]:
        if isinstance(command, OrderRequest):
            return await self._place(command, now)
        if isinstance(command, CancelVenueOrder):
            return await self._cancel(command.client_order_id)
        return await self._lookup(command)

    async def poll(self, working: Sequence[WorkingOrder], now: datetime) -> list[VenueReport]:
        if self._last_poll is not None and now - self._last_poll < self._poll_interval:
            return []
        self._last_poll = now
        self._remember(working)
        followed = {w.venue_order_id: w.client_order_id for w in working
                    if w.venue_order_id and w.client_order_id not in self._ended}  # fmt: skip
        if not followed:
            return []
        try:
            orders = await self._read_orders(followed, _Budget(None))
            fills = await self._read_fills(orders, _Budget(None))
        except CoinbaseError as exc:
            _log.warning("poll failed; the next one asks again", error=str(exc))
            return []
        return [r for coid, order in orders.items() for r in self._reports(coid, order, fills)]

    async def reconcile(self, working: Sequence[WorkingOrder], now: datetime) -> list[VenueReport]:
        # whole: every fill and the end, however much of them was reported before
        for item in working:
            self._trades.pop(item.client_order_id, None)
            self._filled.pop(item.client_order_id, None)
            self._ended.discard(item.client_order_id)
        self._remember(working)
        budget = _Budget(self._reconcile_budget)
        try:
            known = {w.venue_order_id: w.client_order_id for w in working if w.venue_order_id}
            orders = await self._read_orders(known, budget)
            found: dict[str, models.Order] = {}
            for product, group in _by_product(w for w in working if not w.venue_order_id):
                since = min(w.sent_at for w in group) - LOOKUP_MARGIN
                coids = {w.client_order_id for w in group}
                found |= await self._find(product, coids, since, budget)
            fills = await self._read_fills(orders | found, budget)
        except CoinbaseError as exc:
            raise ReconcileIncomplete(f"a reconcile read failed: {exc}") from exc
        return self._reconciled(working, orders, found, fills)

    # --- commands ----------------------------------------------------------------------

    async def _place(self, request: OrderRequest, now: datetime) -> list[VenueReport]:
        coid = request.client_order_id
        self._products[coid], self._sent_at[coid] = request.product_id, now
        try:
            placed = await self._rest.create_order(request)
        except OrderRejected as exc:
            return [VenueDone(coid, OrderStatus.REJECTED, exc.failure_reason)]
        except _TRANSIENT as exc:
            _log.warning("order not confirmed; a lookup will settle it",
                         client_order_id=coid, error=str(exc))  # fmt: skip
            return []
        except CoinbaseError as exc:
            _log.error("order refused", client_order_id=coid, error=str(exc))
            return [VenueDone(coid, OrderStatus.REJECTED, type(exc).__name__)]
        self._venue_ids[coid] = placed.order_id
        return [VenueAccepted(coid, placed.order_id)]

    async def _cancel(self, coid: str) -> list[VenueReport]:
        if coid in self._ended:
            return []
        reports: list[VenueReport] = []
        try:
            venue_id = self._venue_ids.get(coid)
            if venue_id is None:
                reports = await self._lookup(LookupVenueOrder(coid))
                venue_id = self._venue_ids.get(coid)
                if venue_id is None or coid in self._ended:
                    return reports  # never placed, or the lookup saw it end
            refused = [r.failure_reason for r in await self._rest.cancel_orders([venue_id])
                       if not r.success]  # fmt: skip
            if refused:
                _log.info("cancel refused; reading the order back",
                          client_order_id=coid, reason=refused[0])  # fmt: skip
            # A cancel can race a fill: what the order says now is what happened.
            order = await self._rest.order(venue_id)
            fills = await self._read_fills({coid: order}, _Budget(None))
        except CoinbaseError as exc:
            _log.warning("cancel not confirmed; the next poll reads the order",
                         client_order_id=coid, error=str(exc))  # fmt: skip
            return reports
        return reports + self._reports(coid, order, fills)

    async def _lookup(self, command: LookupVenueOrder) -> list[VenueReport]:
        coid = command.client_order_id
        product, sent_at = self._products.get(coid), self._sent_at.get(coid)
        if product is None or sent_at is None:
            # Saying "not found" would let the order be placed again: say nothing.
            _log.error("lookup of an order whose product is unknown", client_order_id=coid)
            return []
        try:
            found = await self._find(product, {coid}, sent_at - LOOKUP_MARGIN, _Budget(None))
            fills = await self._read_fills(found, _Budget(None))
        except CoinbaseError as exc:
            _log.warning("lookup failed; it is asked again later",
                         client_order_id=coid, error=str(exc))  # fmt: skip
            return []
        if coid not in found:
            return [VenueLookup(coid, False)]
        order = found[coid]
        self._venue_ids[coid] = order.order_id
        head: list[VenueReport] = [VenueAccepted(coid, order.order_id), VenueLookup(coid, True)]
        return head + self._reports(coid, order, fills)

    # --- reads (no state changes) ------------------------------------------------------

    async def _read_orders(
        self, followed: dict[str, str], budget: _Budget
    ) -> dict[str, models.Order]:
        """The venue's view of orders by venue id, keyed by client order id."""
        ids = list(followed)
        orders: dict[str, models.Order] = {}
        for offset in range(0, len(ids), BATCH):
            budget.spend()
            for order in await self._rest.list_orders(order_ids=ids[offset : offset + BATCH]):
                if order.order_id in followed:
                    orders[followed[order.order_id]] = order
        return orders

    async def _find(
        self, product: str, coids: set[str], since: datetime, budget: _Budget
    ) -> dict[str, models.Order]:
        """Orders of ``product`` created since ``since`` whose client order id is in ``coids``."""
        budget.spend()
        listed = await self._rest.list_orders(product_ids=[product], start=since)
        return {o.client_order_id: o for o in listed if o.client_order_id in coids}

    async def _read_fills(
        self, orders: dict[str, models.Order], budget: _Budget
    ) -> dict[str, list[models.Fill]]:
        """Fills by venue order id, of the orders with fills not yet reported."""
        ids = [o.order_id for coid, o in orders.items() if self._has_new_fills(coid, o)]
        fills: defaultdict[str, list[models.Fill]] = defaultdict(list)
        for offset in range(0, len(ids), BATCH):
            budget.spend()
            for fill in await self._rest.list_fills(order_ids=ids[offset : offset + BATCH]):
                fills[fill.order_id].append(fill)
        return fills

    def _has_new_fills(self, coid: str, order: models.Order) -> bool:
        return (order.number_of_fills > len(self._trades[coid])
                or order.filled_size > self._filled[coid])  # fmt: skip

    # --- reports (state changes) -------------------------------------------------------

    def _reports(
        self, coid: str, order: models.Order, fills: dict[str, list[models.Fill]]
    ) -> list[VenueReport]:
        """New fills of one order, oldest first, then its end once every fill is in."""
        reports: list[VenueReport] = []
        new = [f for f in fills.get(order.order_id, []) if f.trade_id not in self._trades[coid]]
        for fill in sorted(new, key=lambda f: (f.trade_time, f.trade_id)):
            venue_fill = _fill(coid, fill)
            self._trades[coid].add(fill.trade_id)
            self._filled[coid] += venue_fill.size
            reports.append(venue_fill)
        status = _DONE.get(order.status)
        complete = (len(self._trades[coid]) >= order.number_of_fills
                    or self._filled[coid] >= order.filled_size)  # fmt: skip
        if status is not None and complete and coid not in self._ended:
            self._ended.add(coid)
            reports.append(VenueDone(coid, status, order.reject_reason or order.cancel_message))
        return reports

    def _reconciled(
        self, working: Sequence[WorkingOrder], orders: dict[str, models.Order],
        found: dict[str, models.Order], fills: dict[str, list[models.Fill]],
    ) -> list[VenueReport]:  # fmt: skip
        reports: list[VenueReport] = []
        for item in working:
            coid = item.client_order_id
            order = orders.get(coid) or found.get(coid)
            if order is None:
                if item.venue_order_id:
                    _log.error("venue order not listed", client_order_id=coid,
                               venue_order_id=item.venue_order_id)  # fmt: skip
                else:
                    reports.append(VenueLookup(coid, False))
                continue
            self._venue_ids[coid] = order.order_id
            reports.append(VenueAccepted(coid, order.order_id))
            if coid in found:
                reports.append(VenueLookup(coid, True))
            reports += self._reports(coid, order, fills)
        return reports

    def _remember(self, working: Iterable[WorkingOrder]) -> None:
        """What a lookup of these orders needs: their product, sending time and venue id."""
        for item in working:
            self._products[item.client_order_id] = item.product_id
            self._sent_at.setdefault(item.client_order_id, item.sent_at)
            if item.venue_order_id:
                self._venue_ids[item.client_order_id] = item.venue_order_id


def _fill(coid: str, fill: models.Fill) -> VenueFill:
    # A fill of an order sized in quote may give its size in quote: report it in base.
    size = fill.size / fill.price if fill.size_in_quote and fill.price else fill.size
    liquidity = Liquidity.MAKER if fill.liquidity_indicator == "MAKER" else Liquidity.TAKER
    return VenueFill(coid, fill.trade_id, fill.price, size, fill.commission, liquidity,
                     fill.trade_time)  # fmt: skip


def _by_product(working: Iterable[WorkingOrder]) -> list[tuple[str, list[WorkingOrder]]]:
    groups: defaultdict[str, list[WorkingOrder]] = defaultdict(list)
    for item in working:
        groups[item.product_id].append(item)
    return sorted(groups.items())
