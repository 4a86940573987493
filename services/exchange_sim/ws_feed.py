"""Coinbase's WebSocket messages, built from the venue's state and events.

Each function returns ``(channel, product_id, events)``; the connection wraps them in the
envelope (``channel``, ``client_id``, ``timestamp``, ``sequence_num``, ``events``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.exchange_sim.candles import Granularity
from services.exchange_sim.shapes import rfc3339
from services.exchange_sim.venue import BookChange, MarketTrade, Venue
from shared.coinbase.book import BookSide
from shared.coinbase.orders import plain
from shared.matching.types import Order, OrderKind

__all__ = [
    "Message",
    "candles_message",
    "l2_message",
    "l2_snapshot",
    "ticker_message",
    "trades_message",
    "user_message",
]

Message = tuple[str, str | None, list[dict[str, Any]]]


def l2_snapshot(venue: Venue, product_id: str, now: datetime) -> Message:
    levels = venue.book_levels(product_id)
    return l2_message(
        product_id, [BookChange(side, price, size) for side, price, size in levels], now, "snapshot"
    )


def l2_message(product_id: str, changes: Iterable[BookChange], now: datetime, kind: str) -> Message:
    stamp = rfc3339(now)
    updates = [
        {
            "side": "bid" if change.side is BookSide.BID else "offer",
            "event_time": stamp,
            "price_level": plain(change.price),
            "new_quantity": plain(change.new_quantity),
        }
        for change in changes
    ]
    return "l2_data", product_id, [{"type": kind, "product_id": product_id, "updates": updates}]


def ticker_message(venue: Venue, product_id: str, kind: str) -> Message | None:
    book = venue.books[product_id]
    bid, ask = book.best_bid(), book.best_ask()
    if bid is None or ask is None:
        return None
    trades = venue.trades[product_id]
    last = trades[0].price if trades else (bid[0] + ask[0]) / 2
    ticker = {
        "type": "ticker",
        "product_id": product_id,
        "price": plain(last),
        "volume_24_h": "0",
        "low_24_h": plain(last),
        "high_24_h": plain(last),
        "low_52_w": plain(last),
        "high_52_w": plain(last),
        "price_percent_chg_24_h": "0",
        "best_bid": plain(bid[0]),
        "best_bid_quantity": plain(bid[1]),
        "best_ask": plain(ask[0]),
        "best_ask_quantity": plain(ask[1]),
    }
    return "ticker", product_id, [{"type": kind, "tickers": [ticker]}]


def trades_message(product_id: str, trades: Iterable[MarketTrade], kind: str) -> Message:
    items = [
        {
            "trade_id": trade.trade_id,
            "product_id": trade.product_id,
            "price": plain(trade.price),
            "size": plain(trade.size),
            "side": trade.side.value,
            "time": rfc3339(trade.time),
        }
        for trade in trades
    ]
    return "market_trades", product_id, [{"type": kind, "trades": items}]


def candles_message(venue: Venue, product_id: str, kind: str) -> Message | None:
    candle = venue.candles[product_id].latest(Granularity.FIVE_MINUTE)
    if candle is None:
        return None
    item = {
        "start": str(candle.start),
        "high": plain(candle.high),
        "low": plain(candle.low),
        "open": plain(candle.open),
        "close": plain(candle.close),
        "volume": plain(candle.volume),
        "product_id": product_id,
    }
    return "candles", product_id, [{"type": kind, "candles": [item]}]


def user_message(orders: Iterable[Order], venue: Venue, kind: str) -> Message:
    return "user", None, [{"type": kind, "orders": [_user_order(o, venue) for o in orders]}]


def _user_order(order: Order, venue: Venue) -> dict[str, Any]:
    request = order.request
    size = request.base_size if request.base_size is not None else Decimal(0)
    leaves = size - order.filled_size if not order.status.is_terminal else Decimal(0)
    return {
        "order_id": order.order_id,
        "client_order_id": request.client_order_id,
        "product_id": request.product_id,
        "product_type": "SPOT",
        "order_side": request.side.value,
        "order_type": "Market" if request.kind is OrderKind.MARKET_IOC else "Limit",
        "status": order.status.value,
        "avg_price": plain(order.average_filled_price),
        "cumulative_quantity": plain(order.filled_size),
        "leaves_quantity": plain(max(leaves, Decimal(0))),
        "filled_value": plain(order.filled_value),
        "total_fees": plain(order.total_fees),
        "number_of_fills": str(len(order.fills)),
        "limit_price": plain(request.limit_price) if request.limit_price is not None else "0",
        "post_only": "true" if request.post_only else "false",
        "creation_time": rfc3339(order.created_time),
        "end_time": rfc3339(request.end_time) if request.end_time else "0001-01-01T00:00:00Z",
        "outstanding_hold_amount": plain(venue.ledger.outstanding_hold(order.order_id)),
        "cancel_reason": order.done_reason if order.status.value == "CANCELLED" else "",
        "reject_Reason": "",
        "time_in_force": (
            "IMMEDIATE_OR_CANCEL"
            if request.kind is OrderKind.MARKET_IOC
            else "GOOD_UNTIL_DATE_TIME"
            if request.kind is OrderKind.LIMIT_GTD
            else "GOOD_UNTIL_CANCELLED"
        ),  # fmt: skip
    }
