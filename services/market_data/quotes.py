"""Top of book and last trade per product, and when that is news: market-data's pure core.

A tick is published when the best bid, best ask or last trade price changes; sizes ride
along but a size change alone is not news (it would flood ``md.ticks`` on deep books).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from shared.coinbase.book import L2Book
from shared.coinbase.ws_messages import Trade
from shared.messages import TickUpdated

__all__ = ["QuoteTracker"]


@dataclass
class _Quote:
    bid: tuple[Decimal, Decimal] | None = None
    ask: tuple[Decimal, Decimal] | None = None
    last: Trade | None = None
    published: tuple[Decimal, Decimal, Decimal | None] | None = None


def _newer(trade: Trade, than: Trade | None) -> bool:
    return than is None or (trade.time, trade.trade_id) > (than.time, than.trade_id)


class QuoteTracker:
    def __init__(self, products: Iterable[str]) -> None:
        self._quotes = {product_id: _Quote() for product_id in products}

    def reset(self, product_id: str) -> None:
        """The book is gone (disconnect, gap): no tick until it is rebuilt."""
        quote = self._quotes.get(product_id)
        if quote is not None:
            quote.bid = quote.ask = None

    def on_book(self, book: L2Book, event_time: datetime) -> TickUpdated | None:
        quote = self._quotes.get(book.product_id)
        if quote is None:
            return None
        quote.bid, quote.ask = book.best_bid(), book.best_ask()
        return self._tick(book.product_id, quote, event_time)

    def on_trades(self, trades: Iterable[Trade]) -> list[TickUpdated]:
        changed: dict[str, Trade] = {}
        for trade in trades:
            quote = self._quotes.get(trade.product_id)
            if quote is not None and _newer(trade, quote.last):
                quote.last = changed[trade.product_id] = trade
        ticks = []
        for product_id, trade in changed.items():
            tick = self._tick(product_id, self._quotes[product_id], trade.time)
            if tick is not None:
                ticks.append(tick)
        return ticks

    def _tick(self, product_id: str, quote: _Quote, event_time: datetime) -> TickUpdated | None:
        if quote.bid is None or quote.ask is None or quote.bid[0] >= quote.ask[0]:
            return None
        last_price = quote.last.price if quote.last else None
        key = (quote.bid[0], quote.ask[0], last_price)
        if key == quote.published:
            return None
        quote.published = key
        return TickUpdated(
            product_id=product_id,
            best_bid=quote.bid[0],
            best_bid_size=quote.bid[1],
            best_ask=quote.ask[0],
            best_ask_size=quote.ask[1],
            last_price=last_price,
            last_size=quote.last.size if quote.last else None,
            exchange_time=event_time,
        )
