"""The paper venue: our orders matched against the live book, never sent to Coinbase.

It trades through :class:`shared.matching.account.TradingAccount`, the same engine and
balances exchange-sim and the backtest use, fed with ``md.books`` snapshots and the
trades seen on ``md.ticks``:

- An order arrives ``latency`` after it was sent, and meets the book as it is then.
- Taker orders walk the levels; what depth runs out of is not filled (IOC).
- A post-only order that would cross is refused, as Coinbase refuses it. A resting order
  fills as MAKER, at its limit, only when the market trades or quotes strictly through
  that price; at the limit itself our place in the queue is unknown, so it waits.
- What our own fills took stays missing from the levels it came from for
  ``depletion_s``: the next snapshots are built from the market's data, which did not
  see our paper order, so without this two orders in a row would both fill at the best
  price.
- Fees by liquidity at the configured rates; balances are enforced (``INSUFFICIENT_FUND``).

Pure and deterministic: the time comes in with every call, and ids are counted from
``run_id``. A restart loses the paper orders that were resting, and says so. Of the
orders that ended, the last ``retained_orders`` are remembered (a lookup or a cancel
finds them); older ones are forgotten, so a long rehearsal does not grow without end.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from services.execution.orders import CancelVenueOrder, LookupVenueOrder, VenueCommand
from services.execution.venues import (
    VenueAccepted,
    VenueDone,
    VenueFill,
    VenueLookup,
    VenueReport,
    WorkingOrder,
)
from shared.coinbase.book import BookSide
from shared.matching.account import TradingAccount, currencies
from shared.matching.types import (
    FeeRates,
    Fill,
    Order,
    OrderRejected,
    OrderRequest,
    ProductRules,
)
from shared.matching.types import OrderStatus as VenueStatus
from shared.messages import BookUpdated, OrderStatus, TickUpdated
from shared.money import Side

__all__ = ["PaperVenue", "RESTARTED"]

RESTARTED = "paper_venue_restarted"
RETAINED_ORDERS = 2000  # ended orders a lookup still finds
_STATUS = {
    VenueStatus.FILLED: OrderStatus.FILLED,
    VenueStatus.CANCELLED: OrderStatus.CANCELLED,
    VenueStatus.EXPIRED: OrderStatus.EXPIRED,
    VenueStatus.FAILED: OrderStatus.REJECTED,
}


@dataclass(frozen=True)
class _Arrival:
    at: datetime
    request: OrderRequest


@dataclass(frozen=True)
class _Taken:
    at: datetime
    side: BookSide
    price: Decimal
    size: Decimal


class PaperVenue:
    """Execution's PAPER venue (see the module docstring)."""

    name = "paper"

    def __init__(
        self,
        rules: Mapping[str, ProductRules],
        *,
        fees: FeeRates,
        balances: Mapping[str, Decimal],
        latency: timedelta = timedelta(0),
        depletion: timedelta = timedelta(seconds=10),
        run_id: str = "paper",
        retained_orders: int = RETAINED_ORDERS,
    ) -> None:
        self._run_id = run_id
        self._numbers = {"o": 0, "t": 0}
        # no fill log: every fill is reported, and the reports are the record
        self.account = TradingAccount(
            rules, fees=fees, balances=balances, fill_log=0,
            order_ids=lambda: self._next("o"), trade_ids=lambda: self._next("t"),
        )  # fmt: skip
        self._retained = retained_orders
        self._ended: dict[str, None] = {}  # ended orders' ids, oldest first
        self.latency = latency
        self.depletion = depletion
        self._in_flight: deque[_Arrival] = deque()
        self._reports: list[VenueReport] = []
        self._reported_fills: dict[str, int] = defaultdict(int)  # order id -> fills reported
        self._taken: dict[str, list[_Taken]] = defaultdict(list)
        self._last_print: dict[str, tuple[Decimal, Decimal | None]] = {}

    # --- the market -------------------------------------------------------------------

    def on_book(self, book: BookUpdated, now: datetime) -> None:
        """A new top-N snapshot: minus what we took lately; resting orders it crosses fill."""
        self.on_levels(
            book.product_id,
            [(BookSide.BID, level.price, level.size) for level in book.bids]
            + [(BookSide.OFFER, level.price, level.size) for level in book.asks],
            now,
        )

    def on_levels(
        self, product_id: str, levels: list[tuple[BookSide, Decimal, Decimal]], now: datetime
    ) -> None:
        """:meth:`on_book` without the message: the backtest takes its books from its model."""
        if product_id not in self.account.books:
            return
        self._arrive(now)
        recent = [t for t in self._taken[product_id] if now - t.at < self.depletion]
        self._taken[product_id] = recent
        self.account.books[product_id].apply_snapshot(_minus_taken(levels, recent))
        self.account.on_book(product_id, now)
        self._collect()

    def on_tick(self, tick: TickUpdated, now: datetime) -> None:
        """A tick carrying a trade we have not seen: resting orders it traded through fill."""
        self._arrive(now)
        if tick.product_id not in self.account.books or tick.last_price is None:
            return
        print_key = (tick.last_price, tick.last_size)
        if self._last_print.get(tick.product_id) == print_key:
            return  # the same trade, republished because the quote moved
        self._last_print[tick.product_id] = print_key
        self.on_trade(tick.product_id, tick.last_price, tick.last_size or Decimal(0), now)

    def on_trade(self, product_id: str, price: Decimal, size: Decimal, now: datetime) -> None:
        """A market trade: resting orders it traded through fill."""
        self._arrive(now)
        if product_id in self.account.books and size > 0:
            self.account.on_trade(product_id, price, size, now)
        self._collect()

    # --- the Venue port ---------------------------------------------------------------

    async def send(self, command: VenueCommand, now: datetime) -> list[VenueReport]:
        if isinstance(command, OrderRequest):
            self._in_flight.append(_Arrival(now + self.latency, command))
            self._arrive(now)
        elif isinstance(command, CancelVenueOrder):
            self._arrive(now)  # an order whose time has come is at the venue, not in flight
            self._cancel(command.client_order_id, now)
        elif isinstance(command, LookupVenueOrder):
            self._reports.append(VenueLookup(command.client_order_id, self._knows(command)))
        return self._take()

    async def poll(self, working: Sequence[WorkingOrder], now: datetime) -> list[VenueReport]:
        del working
        self._arrive(now)
        self.account.expire(now)
        self._collect()
        return self._take()

    async def reconcile(self, working: Sequence[WorkingOrder], now: datetime) -> list[VenueReport]:
        """Paper orders live in this process: one it still holds is reported whole (every
        fill, and its end); one still in flight reports when it arrives. A new process has
        an empty book: what a previous one left working is gone."""
        del now
        reports: list[VenueReport] = []
        for item in working:
            coid = item.client_order_id
            order = self.account.order_by_client_id(coid)
            if order is not None:
                reports.append(VenueAccepted(coid, order.order_id))
                reports += self._new_fills(order, start=0)
                if order.status in _STATUS:
                    reports.append(VenueDone(coid, _STATUS[order.status], order.done_reason))
            elif not any(a.request.client_order_id == coid for a in self._in_flight):
                reports.append(VenueDone(coid, OrderStatus.CANCELLED, RESTARTED))
        return reports

    # --- balances ---------------------------------------------------------------------

    def restore_fills(self, fills: Iterable[Fill]) -> None:
        """Settle fills a previous run recorded, so balances start where they ended."""
        for fill in fills:
            base, quote = currencies(fill.product_id)
            self.account.ledger.settle(fill, base, quote)

    def available(self, currency: str) -> Decimal:
        return self.account.ledger.available(currency)

    # --- internals --------------------------------------------------------------------

    def _next(self, kind: str) -> str:
        self._numbers[kind] += 1
        return f"{self._run_id}-{kind}{self._numbers[kind]}"

    def _arrive(self, now: datetime) -> None:
        while self._in_flight and self._in_flight[0].at <= now:
            # every input calls this before it changes the book, so the book is still the
            # one the order met when it arrived
            arrival = self._in_flight.popleft()
            self._place(arrival.request, arrival.at)

    def _place(self, request: OrderRequest, now: datetime) -> None:
        coid = request.client_order_id
        if request.product_id not in self.account.books:
            self._reports.append(VenueDone(coid, OrderStatus.REJECTED, "INVALID_PRODUCT_ID"))
            return
        try:
            order, new = self.account.place(request, now)
        except OrderRejected as exc:
            self._reports.append(VenueDone(coid, OrderStatus.REJECTED, exc.failure_reason))
            return
        self._reports.append(VenueAccepted(coid, order.order_id))
        if new:
            side = BookSide.OFFER if request.side is Side.BUY else BookSide.BID
            self._taken[request.product_id] += [
                _Taken(now, side, fill.price, fill.size) for fill in order.fills
            ]
        self._collect()

    def _cancel(self, coid: str, now: datetime) -> None:
        for arrival in list(self._in_flight):
            if arrival.request.client_order_id == coid:  # caught before it arrived
                self._in_flight.remove(arrival)
                self._reports.append(VenueDone(coid, OrderStatus.CANCELLED, "USER_REQUESTED"))
                return
        order = self.account.order_by_client_id(coid)
        if order is None:
            self._reports.append(VenueLookup(coid, False))
            return
        self.account.cancel(order.order_id, now)  # an order already done stays as it ended
        self._collect()

    def _knows(self, command: LookupVenueOrder) -> bool:
        coid = command.client_order_id
        in_flight = any(a.request.client_order_id == coid for a in self._in_flight)
        return in_flight or self.account.order_by_client_id(coid) is not None

    def _collect(self) -> None:
        """Turn the account's changed orders into reports: new fills first, then the end."""
        for order in self.account.take_changed():
            self._reports += self._new_fills(order)
            if order.status in _STATUS:
                self._reports.append(
                    VenueDone(order.request.client_order_id, _STATUS[order.status],
                              order.done_reason)
                )  # fmt: skip
                self._ended[order.order_id] = None
        while len(self._ended) > self._retained:
            oldest = next(iter(self._ended))
            del self._ended[oldest]
            self.account.forget(oldest)
            self._reported_fills.pop(oldest, None)

    def _new_fills(self, order: Order, start: int | None = None) -> list[VenueReport]:
        """The order's fills from ``start`` on (from the first not yet reported if None)."""
        if start is None:
            start = self._reported_fills[order.order_id]
        self._reported_fills[order.order_id] = len(order.fills)
        coid = order.request.client_order_id
        return [
            VenueFill(coid, fill.trade_id, fill.price, fill.size, fill.commission,
                      fill.liquidity, fill.time)
            for fill in order.fills[start:]
        ]  # fmt: skip

    def _take(self) -> list[VenueReport]:
        reports, self._reports = self._reports, []
        return reports


def _minus_taken(
    levels: list[tuple[BookSide, Decimal, Decimal]], taken: Sequence[_Taken]
) -> list[tuple[BookSide, Decimal, Decimal]]:
    """The snapshot's levels less what our recent fills took from them."""
    used: dict[tuple[BookSide, Decimal], Decimal] = defaultdict(Decimal)
    for take in taken:
        used[(take.side, take.price)] += take.size
    adjusted = [(side, price, size - used[(side, price)]) for side, price, size in levels]
    return [(side, price, size) for side, price, size in adjusted if size > 0]
