"""Coinbase-style order matching against an external level-2 book and its trade prints.

Market orders and the crossing part of limit orders take the book as TAKER. Resting
orders never match each other: they fill as MAKER, at their own limit price, only when
the market trades or quotes strictly through them; at the limit itself the queue
position is unknown, so they wait. No clock, no I/O: ``now`` and ids are passed in, and
balances belong to the caller. ``done_reason`` is one of :class:`DoneReason`, or empty
while open or once fully filled.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from shared.coinbase.book import BookSide, L2Book
from shared.matching.types import (
    FeeRates,
    Fill,
    Liquidity,
    Order,
    OrderKind,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    ProductRules,
)
from shared.matching.validation import validate_request
from shared.matching.walk import beyond_limit, walk_book
from shared.money import Rounding, Side, quantize

__all__ = ["DoneReason", "MatchingEngine"]

_ALL_LEVELS = sys.maxsize
Level = tuple[Decimal, Decimal]


class DoneReason(StrEnum):
    """Why an order stopped: IOC_UNFILLED goes with status CANCELLED, IOC_PARTIAL with FILLED."""

    IOC_PARTIAL = "IOC_PARTIAL"
    IOC_UNFILLED = "IOC_UNFILLED"
    USER_REQUESTED = "USER_REQUESTED"
    END_TIME_REACHED = "END_TIME_REACHED"


class MatchingEngine:
    """Accepts orders, matches them, and remembers every order it accepted."""

    def __init__(
        self,
        rules: Mapping[str, ProductRules],
        fees: FeeRates,
        *,
        order_ids: Callable[[], str],
        trade_ids: Callable[[], str],
    ) -> None:
        self._rules = dict(rules)
        self._fees = fees
        self._order_ids = order_ids
        self._trade_ids = trade_ids
        self._orders: dict[str, Order] = {}
        self._resting: dict[str, Order] = {}  # OPEN orders, in arrival order

    def set_fees(self, fees: FeeRates) -> None:
        """Use these rates for every fill from now on (a new fee tier)."""
        self._fees = fees

    def set_rules(self, rules: Mapping[str, ProductRules]) -> None:
        """Add products, or take the venue's new rules for known ones."""
        self._rules.update(rules)

    def validate(self, request: OrderRequest, now: datetime) -> None:
        """Raise ``OrderRejected`` with Coinbase's reason if the venue would refuse it."""
        validate_request(request, self._rules, now)

    def submit(self, request: OrderRequest, book: L2Book, now: datetime, *, consume: bool) -> Order:
        """Accept ``request`` and match what crosses ``book``; ``consume`` removes what it took."""
        rules = validate_request(request, self._rules, now)
        if book.product_id != request.product_id:
            raise ValueError(f"book is for {book.product_id}, order for {request.product_id}")
        levels = book.asks(_ALL_LEVELS) if request.side is Side.BUY else book.bids(_ALL_LEVELS)
        if request.kind is OrderKind.MARKET_IOC:
            if not levels:
                raise OrderRejected("INVALID_NO_LIQUIDITY", f"no {request.side} liquidity")
            executions = self._market_executions(request, rules, levels)
        else:
            executions = self._limit_executions(request, rules, levels)
        order = self._accept(request, now)
        for price, size in executions:
            self._fill(order, price, size, Liquidity.TAKER, now)
        if consume:
            _consume(book, request.side, levels, executions)
        if request.kind is OrderKind.MARKET_IOC:
            _close_ioc(order, levels, rules.base_increment)
        elif order.status is OrderStatus.OPEN:
            self._resting[order.order_id] = order
        return order

    def on_trade(self, product_id: str, price: Decimal, size: Decimal, now: datetime) -> list[Fill]:
        """Fill resting orders the print traded through; together they take at most ``size``."""
        if price <= 0 or size <= 0:
            raise ValueError(f"impossible print {size} @ {price}")
        fills: list[Fill] = []
        available = size
        for side in Side:
            for order in self._queue(product_id, side, now):
                if not _through(price, order):
                    continue  # a print at the limit does not fill
                fill = self._fill_maker(order, available, now)
                if fill is not None:
                    fills.append(fill)
                    available -= fill.size
        return fills

    def on_book(self, book: L2Book, now: datetime) -> list[Fill]:
        """Fill resting orders that ``book`` quotes strictly through; the book is not changed."""
        fills: list[Fill] = []
        for side in Side:
            levels = book.asks(_ALL_LEVELS) if side is Side.BUY else book.bids(_ALL_LEVELS)
            remaining = [[price, size] for price, size in levels]
            for order in self._queue(book.product_id, side, now):
                crossing = [level for level in remaining if _through(level[0], order)]
                available = sum((level[1] for level in crossing), Decimal(0))
                fill = self._fill_maker(order, available, now)
                if fill is not None:
                    fills.append(fill)
                    _take_worst_first(crossing, fill.size)
        return fills

    def cancel(self, order_id: str, now: datetime) -> Order:
        """Cancel an open order; ``KeyError`` if unknown, ``OrderRejected`` if already done."""
        order = self._orders[order_id]
        if order.status.is_terminal:
            raise OrderRejected("UNKNOWN_CANCEL_ORDER", f"order {order_id} is {order.status}")
        self._close(order, OrderStatus.CANCELLED, DoneReason.USER_REQUESTED)
        return order

    def expire(self, now: datetime) -> list[Order]:
        """Expire every open GTD order whose end_time is at or before ``now``."""
        due = [order for order in self._resting.values() if _ended(order, now)]
        for order in due:
            self._close(order, OrderStatus.EXPIRED, DoneReason.END_TIME_REACHED)
        return due

    def open_orders(self, product_id: str | None = None) -> list[Order]:
        """Open orders, oldest first, of one product or of all."""
        orders = self._resting.values()
        return [o for o in orders if product_id is None or o.request.product_id == product_id]

    def order(self, order_id: str) -> Order:
        """The order with this id, in whatever state; ``KeyError`` if unknown."""
        return self._orders[order_id]

    def forget(self, order_id: str) -> None:
        """Stop remembering a finished order; ``ValueError`` if it is still open."""
        if not self._orders[order_id].status.is_terminal:
            raise ValueError(f"order {order_id} is still open")
        del self._orders[order_id]

    def _market_executions(
        self, request: OrderRequest, rules: ProductRules, levels: Sequence[Level]
    ) -> list[Level]:
        increment = rules.base_increment
        if request.quote_size is None:
            return walk_book(levels, base_size=request.base_size, base_increment=increment)
        executions = walk_book(
            levels,
            quote_budget=request.quote_size,
            fee_rate=self._fees.taker,
            base_increment=increment,
        )
        return self._within_budget(executions, request.quote_size, rules)

    def _within_budget(
        self, executions: list[Level], budget: Decimal, rules: ProductRules
    ) -> list[Level]:
        """Trim the last execution until value plus rounded commissions fit ``budget``:
        to the largest size, whole increments less, that fits, or away and on to the one
        before."""
        while executions and self._cost(executions, rules) > budget:
            price, size = executions.pop()
            trimmed = self._largest_fitting(executions, price, size, budget, rules)
            if trimmed is not None:
                executions.append((price, trimmed))
        return executions

    def _largest_fitting(
        self, before: list[Level], price: Decimal, size: Decimal, budget: Decimal,
        rules: ProductRules,
    ) -> Decimal | None:  # fmt: skip
        """The largest of ``size`` less one, two... increments (above zero) that fits
        ``budget`` after ``before``, or None. Cost never falls as size grows, so a
        bisection finds it; one increment at a time, a cent of rounded fee on a cheap
        coin is thousands of steps."""
        increment = rules.base_increment

        def fits(steps: int) -> bool:
            return self._cost([*before, (price, size - steps * increment)], rules) <= budget

        most = math.ceil(size / increment) - 1  # the most steps that leave some size
        if most < 1 or not fits(most):
            return None
        fewest, enough = 0, most  # fits(enough), and not fits(fewest)
        while enough - fewest > 1:
            middle = (fewest + enough) // 2
            fewest, enough = (fewest, middle) if fits(middle) else (middle, enough)
        return size - enough * increment

    def _cost(self, executions: list[Level], rules: ProductRules) -> Decimal:
        """Value plus taker commissions, each rounded as it would be charged."""
        values = [price * size for price, size in executions]
        fees = [self._commission(value, Liquidity.TAKER, rules) for value in values]
        return sum(values, Decimal(0)) + sum(fees, Decimal(0))

    def _limit_executions(
        self, request: OrderRequest, rules: ProductRules, levels: Sequence[Level]
    ) -> list[Level]:
        limit = _limit_of(request)
        crosses = bool(levels) and not beyond_limit(levels[0][0], limit, request.side)
        if not crosses:
            return []
        if request.post_only:
            raise OrderRejected(
                "INVALID_LIMIT_PRICE_POST_ONLY", f"{request.side} at {limit} would take liquidity"
            )
        return walk_book(
            levels,
            base_size=request.base_size,
            base_increment=rules.base_increment,
            limit_price=limit,
            side=request.side,
        )

    def _accept(self, request: OrderRequest, now: datetime) -> Order:
        order_id = self._order_ids()
        if order_id in self._orders:
            raise ValueError(f"order id {order_id} was already used")
        order = Order(order_id=order_id, request=request, created_time=now)
        self._orders[order_id] = order
        return order

    def _queue(self, product_id: str, side: Side, now: datetime) -> list[Order]:
        """Live resting orders on ``side``: best limit first, then oldest first."""
        live = [
            order
            for order in self._resting.values()
            if order.request.product_id == product_id
            and order.request.side is side
            and not _ended(order, now)
        ]
        sign = -1 if side is Side.BUY else 1
        return sorted(live, key=lambda order: (sign * _limit(order), order.created_time))

    def _fill_maker(self, order: Order, available: Decimal, now: datetime) -> Fill | None:
        rules = self._rules[order.request.product_id]
        remaining = order.remaining_base or Decimal(0)
        size = quantize(min(remaining, available), rules.base_increment, Rounding.FLOOR)
        if size <= 0:
            return None
        return self._fill(order, _limit(order), size, Liquidity.MAKER, now)

    def _fill(
        self, order: Order, price: Decimal, size: Decimal, liquidity: Liquidity, now: datetime
    ) -> Fill:
        rules = self._rules[order.request.product_id]
        fill = Fill(
            trade_id=self._trade_ids(),
            order_id=order.order_id,
            product_id=order.request.product_id,
            side=order.request.side,
            price=price,
            size=size,
            commission=self._commission(price * size, liquidity, rules),
            liquidity=liquidity,
            time=now,
        )
        order.fills.append(fill)
        order.filled_size += size
        order.filled_value += fill.value
        order.total_fees += fill.commission
        order.last_fill_time = now
        if order.remaining_base == 0:
            self._close(order, OrderStatus.FILLED, "")
        return fill

    def _commission(self, value: Decimal, liquidity: Liquidity, rules: ProductRules) -> Decimal:
        rate = self._fees.maker if liquidity is Liquidity.MAKER else self._fees.taker
        return quantize(value * rate, rules.quote_increment, Rounding.HALF_EVEN)

    def _close(self, order: Order, status: OrderStatus, reason: str) -> None:
        order.status = status
        order.done_reason = reason
        self._resting.pop(order.order_id, None)


def _close_ioc(order: Order, levels: Sequence[Level], increment: Decimal) -> None:
    """Settle a market order: whatever did not fill at once is cancelled."""
    if order.filled_size == 0:
        order.status, order.done_reason = OrderStatus.CANCELLED, DoneReason.IOC_UNFILLED
        return
    if order.remaining_base is None:  # sized in quote: short only if it emptied the book
        depth = sum((quantize(size, increment, Rounding.FLOOR) for _, size in levels), Decimal(0))
        short = order.filled_size >= depth
    else:
        short = order.remaining_base > 0
    order.status = OrderStatus.FILLED
    order.done_reason = DoneReason.IOC_PARTIAL if short else ""


def _consume(book: L2Book, side: Side, levels: Sequence[Level], executions: list[Level]) -> None:
    """Take the executed sizes out of ``book``, so the next order sees what is left."""
    book_side = BookSide.OFFER if side is Side.BUY else BookSide.BID
    resting = dict(levels)
    for price, size in executions:
        book.apply_update(book_side, price, resting[price] - size)


def _take_worst_first(crossing: list[list[Decimal]], size: Decimal) -> None:
    """Use up the crossing levels nearest the limit first, leaving better ones for others."""
    for level in reversed(crossing):
        taken = min(level[1], size)
        level[1] -= taken
        size -= taken


def _through(price: Decimal, order: Order) -> bool:
    """Whether the market at ``price`` went strictly past the order's limit."""
    limit = _limit(order)
    return price < limit if order.request.side is Side.BUY else price > limit


def _ended(order: Order, now: datetime) -> bool:
    end_time = order.request.end_time
    return order.request.kind is OrderKind.LIMIT_GTD and end_time is not None and end_time <= now


def _limit(order: Order) -> Decimal:
    return _limit_of(order.request)


def _limit_of(request: OrderRequest) -> Decimal:
    if request.limit_price is None:
        raise ValueError(f"{request.kind} order has no limit price")
    return request.limit_price
