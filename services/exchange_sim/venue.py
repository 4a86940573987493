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

from services.exchange_sim.candles import CandleStore
from services.exchange_sim.catalog import ListedProduct
from services.exchange_sim.market import MarketSource
from shared.coinbase.book import BookSide, L2Book
from shared.matching.account import TradingAccount
from shared.matching.engine import MatchingEngine
from shared.matching.ledger import Ledger
from shared.matching.types import FeeRates, Fill, Order, OrderRequest
from shared.money import Side

__all__ = ["BookChange", "MarketTrade", "Venue", "VenueEvents"]

TRADE_LOG = 1000


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
        self.account = TradingAccount(
            {p: listing.rules for p, listing in products.items()},
            fees=fees,
            balances=balances,
            order_ids=self._new_id,
            trade_ids=self._new_trade_id,
        )
        self.candles = {p: CandleStore() for p in products}
        self.trades: dict[str, deque[MarketTrade]] = {p: deque(maxlen=TRADE_LOG) for p in products}
        self._announced: dict[str, dict[tuple[BookSide, Decimal], Decimal]] = {
            p: {} for p in products
        }
        self._pending = VenueEvents()
        self._time: datetime | None = None

    @property
    def time(self) -> datetime:
        """How far the markets have been moved: every print up to here has happened."""
        if self._time is None:
            raise RuntimeError("the venue has not been stepped yet")
        return self._time

    @property
    def books(self) -> dict[str, L2Book]:
        return self.account.books

    @property
    def ledger(self) -> Ledger:
        return self.account.ledger

    @property
    def engine(self) -> MatchingEngine:
        return self.account.engine

    @property
    def fees(self) -> FeeRates:
        return self.account.fees

    @property
    def fills(self) -> deque[Fill]:
        return self.account.fills

    @property
    def traded_volume(self) -> Decimal:
        return self.account.traded_volume

    @property
    def paid_fees(self) -> Decimal:
        return self.account.paid_fees

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
                self.account.on_trade(
                    product_id, market_print.price, market_print.size, market_print.time
                )
            self.account.on_book(product_id, now)
        self.account.expire(now)
        self._time = now

    def take_events(self) -> VenueEvents:
        """What happened since the last call, with book changes diffed per product."""
        events, self._pending = self._pending, VenueEvents()
        # An order that filled several times since the last call is announced once.
        events.orders = self.account.take_changed()
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
        order, new = self.account.place(request, now)
        if new:
            for fill in order.fills:
                self._record_trade(request.product_id, fill.price, fill.size, request.side, now)
        return order, new

    def cancel(self, order_id: str, now: datetime) -> str:
        """Cancel one order; the failure reason, or ``""`` on success."""
        return self.account.cancel(order_id, now)

    def order(self, order_id: str) -> Order:
        return self.account.order(order_id)

    def orders(self) -> list[Order]:
        """Every order, newest first."""
        return self.account.orders()

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_trade_id(self) -> str:
        self._trade_number += 1
        return str(self._trade_number)
