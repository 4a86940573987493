"""The simulated venue: markets, the matching engine, the account, and what changed.

Pure: no I/O and no clock reads; the shell passes ``now`` in. Each :meth:`Venue.step`
moves every market to ``now``, lets market prints and book moves fill resting orders,
and expires GTD orders. :meth:`Venue.take_events` hands the shell what the WebSocket
channels must announce: book changes (diffed against what was last announced), market
trades and orders whose state changed.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from services.exchange_sim.accounts import InsufficientFunds, Ledger
from services.exchange_sim.candles import CandleStore
from services.exchange_sim.catalog import ListedProduct
from services.exchange_sim.market import MarketSource
from shared.coinbase.book import BookSide, L2Book
from shared.matching import MatchingEngine, walk_book
from shared.matching.types import (
    FeeRates,
    Fill,
    Order,
    OrderKind,
    OrderRejected,
    OrderRequest,
)
from shared.money import Rounding, Side, quantize

__all__ = ["BookChange", "MarketTrade", "Venue", "VenueEvents"]

TRADE_LOG = 1000
FILL_LOG = 100_000


@dataclass(frozen=True)
class BookChange:
    side: BookSide
    price: Decimal
    new_quantity: Decimal


@dataclass(frozen=True)
class MarketTrade:
    trade_id: str
    product_id: str
    price: Decimal
    size: Decimal
    side: Side  # the aggressor
    time: datetime


@dataclass
class VenueEvents:
    book_changes: dict[str, list[BookChange]] = field(default_factory=dict)
    trades: list[MarketTrade] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)


class Venue:
    def __init__(
        self,
        products: Mapping[str, ListedProduct],
        sources: Mapping[str, MarketSource],
        *,
        fees: FeeRates,
        balances: Mapping[str, Decimal],
        seed: int = 0,
    ) -> None:
        self.products = dict(products)
        self._sources = dict(sources)
        self._rng = random.Random(seed)
        self._trade_number = 0
        self.fees = fees
        self.books = {p: L2Book(p) for p in products}
        self.candles = {p: CandleStore() for p in products}
        self.trades: dict[str, deque[MarketTrade]] = {p: deque(maxlen=TRADE_LOG) for p in products}
        self.ledger = Ledger(dict(balances))
        self.engine = MatchingEngine(
            {p: listing.rules for p, listing in products.items()},
            fees,
            order_ids=self._new_id,
            trade_ids=self._new_trade_id,
        )
        self._announced: dict[str, dict[tuple[BookSide, Decimal], Decimal]] = {
            p: {} for p in products
        }
        self._by_client_id: dict[str, str] = {}
        self._order_ids: list[str] = []
        self.fills: deque[Fill] = deque(maxlen=FILL_LOG)
        self.traded_volume = Decimal(0)
        self.paid_fees = Decimal(0)
        self._pending = VenueEvents()

    # -- market ------------------------------------------------------------------------

    def step(self, now: datetime) -> None:
        """Move every market to ``now``; fill what the market traded or moved through."""
        for product_id, source in self._sources.items():
            move = source.advance(now)
            book = self.books[product_id]
            book.apply_snapshot(
                [(BookSide.BID, price, size) for price, size in move.bids]
                + [(BookSide.OFFER, price, size) for price, size in move.asks]
            )
            for market_print in move.prints:
                self._record_trade(
                    product_id, market_print.price, market_print.size, market_print.side,
                    market_print.time,
                )  # fmt: skip
                self._apply(self.engine.on_trade(product_id, market_print.price,
                                                 market_print.size, market_print.time))  # fmt: skip
            self._apply(self.engine.on_book(book, now))
        for order in self.engine.expire(now):
            self.ledger.release(order.order_id)
            self._pending.orders.append(order)

    def take_events(self) -> VenueEvents:
        """What happened since the last call, with book changes diffed per product."""
        events, self._pending = self._pending, VenueEvents()
        # An order that filled several times since the last call is announced once.
        events.orders = list({order.order_id: order for order in events.orders}.values())
        for product_id, book in self.books.items():
            changes = self._book_changes(product_id, book)
            if changes:
                events.book_changes[product_id] = changes
        return events

    def book_levels(self, product_id: str) -> list[tuple[BookSide, Decimal, Decimal]]:
        """The book as last announced: the snapshot that later updates are diffs of."""
        announced = self._announced[product_id]
        bids = sorted((p for side, p in announced if side is BookSide.BID), reverse=True)
        asks = sorted(p for side, p in announced if side is BookSide.OFFER)
        return [(BookSide.BID, p, announced[(BookSide.BID, p)]) for p in bids] + [
            (BookSide.OFFER, p, announced[(BookSide.OFFER, p)]) for p in asks
        ]

    def _book_changes(self, product_id: str, book: L2Book) -> list[BookChange]:
        current = {(BookSide.BID, p): s for p, s in book.bids(10_000)}
        current.update({(BookSide.OFFER, p): s for p, s in book.asks(10_000)})
        before = self._announced[product_id]
        changes = [
            BookChange(side, price, size)
            for (side, price), size in current.items()
            if before.get((side, price)) != size
        ]
        changes += [
            BookChange(side, price, Decimal(0)) for (side, price) in before.keys() - current.keys()
        ]
        self._announced[product_id] = current
        return changes

    def _record_trade(
        self, product_id: str, price: Decimal, size: Decimal, side: Side, time: datetime
    ) -> None:
        trade = MarketTrade(self._new_trade_id(), product_id, price, size, side, time)
        self.trades[product_id].appendleft(trade)
        self.candles[product_id].add_print(time, price, size)
        self._pending.trades.append(trade)

    # -- orders ------------------------------------------------------------------------

    def place(self, request: OrderRequest, now: datetime) -> tuple[Order, bool]:
        """Accept or refuse one order; a known ``client_order_id`` returns the existing one."""
        existing = self._by_client_id.get(request.client_order_id)
        if existing is not None:
            return self.engine.order(existing), False
        self.engine.validate(request, now)
        base, quote = _currencies(request.product_id)
        hold = self._check_funds(request, base, quote)
        order = self.engine.submit(request, self.books[request.product_id], now, consume=True)
        if hold is not None:
            self.ledger.hold(order.order_id, *hold)
        self._by_client_id[request.client_order_id] = order.order_id
        self._order_ids.append(order.order_id)
        for fill in order.fills:
            self._record_trade(request.product_id, fill.price, fill.size, request.side, now)
        self._apply(list(order.fills))
        if order.status.is_terminal:
            self._pending.orders.append(order)
        return order, True

    def cancel(self, order_id: str, now: datetime) -> str:
        """Cancel one order; the failure reason, or ``""`` on success."""
        try:
            order = self.engine.cancel(order_id, now)
        except KeyError:
            return "UNKNOWN_CANCEL_ORDER"
        except OrderRejected as exc:
            return exc.failure_reason
        self.ledger.release(order.order_id)
        self._pending.orders.append(order)
        return ""

    def order(self, order_id: str) -> Order:
        return self.engine.order(order_id)

    def orders(self) -> list[Order]:
        """Every order, newest first."""
        return [self.engine.order(order_id) for order_id in reversed(self._order_ids)]

    def _check_funds(
        self, request: OrderRequest, base: str, quote: str
    ) -> tuple[str, Decimal] | None:
        """Refuse what the account cannot pay; the hold a resting order needs, if any."""
        rules = self.products[request.product_id].rules
        try:
            if request.kind is OrderKind.MARKET_IOC:
                self._check_market_funds(request, base, quote)
                return None
            assert request.base_size is not None and request.limit_price is not None
            if request.side is Side.SELL:
                self.ledger.require(base, request.base_size)
                return base, request.base_size
            notional = request.base_size * request.limit_price * (1 + self.fees.taker)
            amount = quantize(notional, rules.quote_increment, Rounding.CEILING)
            self.ledger.require(quote, amount)
            return quote, amount
        except InsufficientFunds as exc:
            raise OrderRejected("INSUFFICIENT_FUND", f"Insufficient balance: {exc}") from None

    def _check_market_funds(self, request: OrderRequest, base: str, quote: str) -> None:
        if request.side is Side.SELL:
            if request.base_size is None:
                raise OrderRejected(
                    "UNSUPPORTED_ORDER_CONFIGURATION", "market sells are sized in base here"
                )
            self.ledger.require(base, request.base_size)
        elif request.quote_size is not None:
            self.ledger.require(quote, request.quote_size)
        else:
            rules = self.products[request.product_id].rules
            walk = walk_book(
                self.books[request.product_id].asks(10_000),
                base_size=request.base_size,
                base_increment=rules.base_increment,
            )
            # Fees are rounded per fill, as the engine charges them.
            cost = sum(
                (p * s + quantize(p * s * self.fees.taker, rules.quote_increment,
                                  Rounding.HALF_EVEN) for p, s in walk),
                Decimal(0),
            )  # fmt: skip
            self.ledger.require(quote, cost)

    def _apply(self, fills: list[Fill]) -> None:
        for fill in fills:
            order = self.engine.order(fill.order_id)
            base, quote = _currencies(fill.product_id)
            if order.request.kind is not OrderKind.MARKET_IOC:
                # Give back exactly what this fill costs; the rest stays held for the rest.
                cost = fill.size if fill.side is Side.SELL else fill.value + fill.commission
                self.ledger.release(order.order_id, cost)
            self.ledger.settle(fill, base, quote)
            self.fills.appendleft(fill)
            self.traded_volume += fill.value
            self.paid_fees += fill.commission
            if order.status.is_terminal:
                self.ledger.release(order.order_id)
            self._pending.orders.append(order)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_trade_id(self) -> str:
        self._trade_number += 1
        return str(self._trade_number)


def _currencies(product_id: str) -> tuple[str, str]:
    base, _, quote = product_id.partition("-")
    return base, quote
