"""The order state machine of one intent: maker first, then taker, with three timers.

Pure: the venue's answers and the time come in as calls, and what to do goes out as
:class:`Step` (venue commands and ``exec.reports`` events). An intent works one venue
order at a time:

- ``MAKER_FIRST``: a post-only limit at the best bid (buys) or best ask (sells). If it is
  not fully filled ``maker_wait_ttl_s`` after it was sent, it is cancelled, and once the
  cancel is confirmed the rest goes as a market IOC (taker), or, with ``after_maker_wait:
  repost``, as a new post-only at the best price of the moment, up to ``max_reposts``
  times before it goes taker after all. A post-only order the venue refuses because it
  would have crossed goes taker at once.
- ``TAKER`` (exits, flatten): a market IOC straight away.
- An order the venue has not confirmed ``pending_ttl_s`` after it was sent is looked up
  by its client order id, and the answer resolves it; a lookup or a cancel left
  unanswered is sent again every ``pending_ttl_s``.
- Anything still working ``stale_ttl_s`` after the intent started is cancelled, and the
  intent ends EXPIRED with what filled.

Each venue order of an intent has a deterministic client order id, the intent's id and
the attempt number, so a restart or a redelivered intent never places a second order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from shared.config.models import ExecutionPolicy
from shared.matching.types import OrderKind, OrderRequest, ProductRules
from shared.messages import (
    IntentFinished,
    LiquidityPreference,
    OrderStatus,
    OrderUpdated,
    PlaceOrder,
    TradingMode,
)
from shared.money import Rounding, Side, quantize

__all__ = [
    "CancelVenueOrder", "IntentExecution", "LookupVenueOrder", "RecordedOrder", "Role", "Step",
    "VenueCommand", "client_order_id",
]  # fmt: skip

ZERO = Decimal(0)
TERMINAL = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED)
POST_ONLY_REFUSALS = ("INVALID_LIMIT_PRICE_POST_ONLY", "POST_ONLY_WOULD_CROSS")


def client_order_id(intent_id: str, attempt: int) -> str:
    """The venue order id we choose: the same intent and attempt give the same id."""
    digest = hashlib.sha256(intent_id.encode()).hexdigest()[:32]
    return f"{digest}-{attempt}"


class Role(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@dataclass(frozen=True)
class CancelVenueOrder:
    client_order_id: str


@dataclass(frozen=True)
class LookupVenueOrder:
    client_order_id: str


VenueCommand = OrderRequest | CancelVenueOrder | LookupVenueOrder


@dataclass
class Step:
    """What one call decided: commands for the venue, events for ``exec.reports``."""

    commands: list[VenueCommand] = field(default_factory=list)
    events: list[OrderUpdated | IntentFinished] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedOrder:
    """An order of the intent as a previous run left it (for :meth:`IntentExecution.resume`)."""

    request: OrderRequest
    status: OrderStatus
    venue_order_id: str | None
    filled_base: Decimal
    filled_quote: Decimal
    fees: Decimal
    reason: str = ""


@dataclass
class VenueOrder:
    request: OrderRequest
    role: Role
    sent_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    venue_order_id: str | None = None
    filled_base: Decimal = ZERO
    filled_quote: Decimal = ZERO
    fees: Decimal = ZERO
    cancel_sent: bool = False
    cancel_sent_at: datetime | None = None
    lookup_sent_at: datetime | None = None
    reason: str = ""


class IntentExecution:
    """One intent from its first order to ``IntentFinished``."""

    def __init__(
        self, intent: PlaceOrder, rules: ProductRules, policy: ExecutionPolicy,
        mode: TradingMode, now: datetime,
    ) -> None:  # fmt: skip
        self.intent = intent
        self.rules = rules
        self.policy = policy
        self.mode = mode
        self.started_at = now
        self.orders: list[VenueOrder] = []
        self.finished: IntentFinished | None = None
        self.cancel_reason = ""  # why the intent, not just an order, is being cancelled
        self._quote: tuple[Decimal, Decimal] | None = None  # best bid and ask, last seen

    @classmethod
    def resume(
        cls, intent: PlaceOrder, rules: ProductRules, policy: ExecutionPolicy, mode: TradingMode,
        *, started_at: datetime, orders: list[RecordedOrder], cancel_reason: str, now: datetime,
    ) -> IntentExecution:  # fmt: skip
        """The intent as a previous run left it; working orders' timers start again at ``now``."""
        machine = cls(intent, rules, policy, mode, started_at)
        machine.cancel_reason = cancel_reason
        for recorded in orders:
            role = Role.MAKER if recorded.request.post_only else Role.TAKER
            machine.orders.append(VenueOrder(
                recorded.request, role, now, recorded.status, recorded.venue_order_id,
                recorded.filled_base, recorded.filled_quote, recorded.fees,
                reason=recorded.reason,
            ))  # fmt: skip
        return machine

    # --- what the machine is told ------------------------------------------------------

    def update_quote(self, best_bid: Decimal, best_ask: Decimal) -> None:
        """The market's best bid and ask now: where a re-post goes."""
        self._quote = (best_bid, best_ask)

    @property
    def working_order(self) -> VenueOrder | None:
        """The order the venue may still be working on, if any."""
        return self._working()

    def start(self, best_bid: Decimal, best_ask: Decimal, now: datetime) -> Step:
        """Send the first order: post-only at our side of the book, or taker."""
        self.update_quote(best_bid, best_ask)
        if self.intent.liquidity is LiquidityPreference.TAKER:
            return self._taker(now)
        return self._maker(now)

    def _maker(self, now: datetime) -> Step:
        assert self._quote is not None
        best_bid, best_ask = self._quote
        price = best_bid if self.intent.side is Side.BUY else best_ask
        price = quantize(price, self.rules.price_increment, Rounding.FLOOR
                         if self.intent.side is Side.BUY else Rounding.CEILING)  # fmt: skip
        base = self._remaining_base(price)
        if base is None or base < self.rules.base_min_size:
            return self._taker(now)  # too small to rest: let the market size it
        request = OrderRequest(
            client_order_id=client_order_id(self.intent.intent_id, len(self.orders)),
            product_id=self.intent.product_id, side=self.intent.side, kind=OrderKind.LIMIT_GTC,
            base_size=base, limit_price=price, post_only=True,
        )  # fmt: skip
        return self._send(request, Role.MAKER, now)

    def on_accepted(self, coid: str, venue_order_id: str, now: datetime) -> Step:
        order = self._order(coid)
        order.venue_order_id = venue_order_id
        if order.status is not OrderStatus.PENDING:
            return Step()
        order.status = OrderStatus.OPEN
        return Step(events=[self._updated(order, now)])

    def on_fill(
        self, coid: str, price: Decimal, size: Decimal, fee: Decimal, now: datetime
    ) -> Step:
        order = self._order(coid)
        order.filled_base += size
        order.filled_quote += price * size
        order.fees += fee
        if order.status is OrderStatus.PENDING:
            order.status = OrderStatus.OPEN
        full = order.request.base_size is not None and order.filled_base >= order.request.base_size
        order.status = OrderStatus.FILLED if full else OrderStatus.PARTIALLY_FILLED
        step = Step(events=[self._updated(order, now)])
        if full and self.finished is None:
            step.events.append(self._finish(OrderStatus.FILLED, "", now))
        return step

    def on_done(self, coid: str, status: OrderStatus, reason: str, now: datetime) -> Step:
        """The venue says the order ended: FILLED, CANCELLED, REJECTED or EXPIRED."""
        order = self._order(coid)
        if order.status in TERMINAL:
            return Step()
        order.status, order.reason = status, reason
        step = Step(events=[self._updated(order, now)])
        if self.finished is not None:
            return step
        if status is OrderStatus.FILLED:
            step.events.append(self._finish(OrderStatus.FILLED, "", now))
        elif self.cancel_reason:
            ending = OrderStatus.EXPIRED if self.cancel_reason == "stale" else OrderStatus.CANCELLED
            step.events.append(self._finish(ending, self.cancel_reason, now))
        elif order.role is Role.MAKER and (order.cancel_sent or reason in POST_ONLY_REFUSALS):
            # the maker had its time, or would have crossed
            more = self._maker(now) if self._repost_due(order) else self._taker(now)
            step.commands += more.commands
            step.events += more.events
        else:
            ending = OrderStatus.REJECTED if status is OrderStatus.REJECTED else self._ended()
            step.events.append(self._finish(ending, reason, now))
        return step

    def on_lookup(self, coid: str, found: bool, now: datetime) -> Step:
        """The answer to a lookup: an order the venue never saw was never placed."""
        order = self._order(coid)
        if found or order.status is not OrderStatus.PENDING:
            return Step()
        return self.on_done(coid, OrderStatus.REJECTED, "not_found_at_venue", now)

    def cancel(self, reason: str, now: datetime) -> Step:
        """Stop the intent (a pause or flatten): cancel what works; finish when confirmed."""
        if self.finished is not None:
            return Step()
        self.cancel_reason = reason
        working = self._working()
        if working is None:
            return Step(events=[self._finish(OrderStatus.CANCELLED, reason, now)])
        return Step(commands=self._cancel(working, now))

    def on_timer(self, now: datetime) -> Step:
        """Apply the three TTLs at ``now`` (each fires once, at or after its time)."""
        working = self._working()
        if self.finished is not None or working is None:
            return Step()
        age = now - working.sent_at
        if now - self.started_at >= timedelta(seconds=self.policy.stale_ttl_s):
            self.cancel_reason = "stale"
            return Step(commands=self._cancel(working, now))
        step = Step()
        pending_ttl = timedelta(seconds=self.policy.pending_ttl_s)
        if working.status is OrderStatus.PENDING and age >= pending_ttl:
            # asked again every pending TTL while the venue gives no answer
            asked = working.lookup_sent_at
            if asked is None or now - asked >= pending_ttl:
                working.lookup_sent_at = now
                step.commands.append(LookupVenueOrder(working.request.client_order_id))
        if working.role is Role.MAKER and age >= timedelta(seconds=self.policy.maker_wait_ttl_s):
            step.commands += self._cancel(working, now)
        unanswered = working.cancel_sent_at is not None and now - working.cancel_sent_at
        if unanswered and unanswered >= pending_ttl:
            # a cancel lost on the way (or a venue that never confirmed it) is sent again
            working.cancel_sent_at = now
            step.commands.append(CancelVenueOrder(working.request.client_order_id))
        return step

    # --- helpers -----------------------------------------------------------------------

    @property
    def filled_base(self) -> Decimal:
        return sum((order.filled_base for order in self.orders), ZERO)

    @property
    def filled_quote(self) -> Decimal:
        return sum((order.filled_quote for order in self.orders), ZERO)

    @property
    def fees(self) -> Decimal:
        return sum((order.fees for order in self.orders), ZERO)

    def _remaining_base(self, price: Decimal) -> Decimal | None:
        if self.intent.base_size is not None:
            remaining = self.intent.base_size - self.filled_base
        else:
            assert self.intent.quote_size is not None
            # the maker fee comes out of the same quote: 1000 USD buys what 1000 pays with fees
            fee_rate = self.policy.maker_fee_bps / 10_000
            remaining = (self.intent.quote_size - self.filled_quote - self.fees) / (
                price * (1 + fee_rate)
            )
        if remaining <= 0:
            return None
        return quantize(remaining, self.rules.base_increment, Rounding.FLOOR)

    def _repost_due(self, order: VenueOrder) -> bool:
        """Whether the rest goes as a new post-only rather than taker."""
        if self.policy.after_maker_wait != "repost" or not order.cancel_sent:
            return False  # a post-only that would have crossed goes taker at once
        makers = sum(1 for sent in self.orders if sent.role is Role.MAKER)
        return self._quote is not None and makers <= self.policy.max_reposts

    def _taker(self, now: datetime) -> Step:
        attempt = client_order_id(self.intent.intent_id, len(self.orders))
        if self.intent.base_size is not None:
            base = self.intent.base_size - self.filled_base
            base = quantize(base, self.rules.base_increment, Rounding.FLOOR)
            if base < self.rules.base_min_size or base <= 0:
                return Step(events=[self._finish(self._ended(), "rest_below_minimum", now)])
            request = OrderRequest(attempt, self.intent.product_id, self.intent.side,
                                   OrderKind.MARKET_IOC, base_size=base)  # fmt: skip
        else:
            assert self.intent.quote_size is not None
            quote = self.intent.quote_size - self.filled_quote - self.fees
            quote = quantize(max(quote, ZERO), self.rules.quote_increment, Rounding.FLOOR)
            if quote < self.rules.quote_min_size or quote <= 0:
                return Step(events=[self._finish(self._ended(), "rest_below_minimum", now)])
            request = OrderRequest(attempt, self.intent.product_id, self.intent.side,
                                   OrderKind.MARKET_IOC, quote_size=quote)  # fmt: skip
        return self._send(request, Role.TAKER, now)

    def _send(self, request: OrderRequest, role: Role, now: datetime) -> Step:
        order = VenueOrder(request, role, now)
        self.orders.append(order)
        return Step(commands=[request], events=[self._updated(order, now)])

    def _cancel(self, order: VenueOrder, now: datetime) -> list[VenueCommand]:
        if order.cancel_sent:
            return []
        order.cancel_sent, order.cancel_sent_at = True, now
        return [CancelVenueOrder(order.request.client_order_id)]

    def _working(self) -> VenueOrder | None:
        last = self.orders[-1] if self.orders else None
        return last if last is not None and last.status not in TERMINAL else None

    def _order(self, coid: str) -> VenueOrder:
        for order in self.orders:
            if order.request.client_order_id == coid:
                return order
        raise KeyError(f"no order {coid} in intent {self.intent.intent_id}")

    def _ended(self) -> OrderStatus:
        """How an intent ends that stopped short: FILLED if anything filled, else EXPIRED."""
        return OrderStatus.FILLED if self.filled_base > 0 else OrderStatus.EXPIRED

    def _updated(self, order: VenueOrder, now: datetime) -> OrderUpdated:
        average = order.filled_quote / order.filled_base if order.filled_base else None
        return OrderUpdated(
            client_order_id=order.request.client_order_id, intent_id=self.intent.intent_id,
            venue_order_id=order.venue_order_id, product_id=self.intent.product_id,
            side=self.intent.side, status=order.status, filled_size=order.filled_base,
            average_price=average, reason=order.reason, mode=self.mode, updated_at=now,
        )  # fmt: skip

    def _finish(self, status: OrderStatus, reason: str, now: datetime) -> IntentFinished:
        self.finished = IntentFinished(
            intent_id=self.intent.intent_id, kind=self.intent.kind,
            product_id=self.intent.product_id, side=self.intent.side, status=status,
            filled_base=self.filled_base, filled_quote=self.filled_quote, reason=reason,
            mode=self.mode, finished_at=now,
        )  # fmt: skip
        return self.finished
