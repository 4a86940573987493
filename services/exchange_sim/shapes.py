"""Coinbase Advanced Trade's JSON, field for field, for what exchange-sim serves.

Numbers are strings (as Coinbase sends them), times RFC 3339 with microseconds and a
``Z``. Fields Coinbase sends that have no meaning here carry Coinbase's neutral values
(``""``, ``false``, ``UNKNOWN_...``) so strict clients find every key they expect.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from services.exchange_sim.catalog import ListedProduct
from services.exchange_sim.venue import MarketTrade
from shared.candle_files import Candle
from shared.coinbase.book import L2Book
from shared.coinbase.orders import order_body, plain
from shared.matching.types import Fill, Order, OrderKind

__all__ = [
    "candle_json",
    "fill_json",
    "order_json",
    "pricebook_json",
    "product_json",
    "rfc3339",
    "trade_json",
]

USER_ID = "00000000-0000-4000-8000-000000000001"
_TIME_IN_FORCE = {
    OrderKind.MARKET_IOC: "IMMEDIATE_OR_CANCEL",
    OrderKind.LIMIT_GTC: "GOOD_UNTIL_CANCELLED",
    OrderKind.LIMIT_GTD: "GOOD_UNTIL_DATE_TIME",
}


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def product_json(listing: ListedProduct, book: L2Book, last: Decimal | None) -> dict[str, Any]:
    rules = listing.rules
    base, _, quote = rules.product_id.partition("-")
    mid = _mid(book)
    return {
        "product_id": rules.product_id,
        "price": plain(last) if last is not None else (plain(mid) if mid else ""),
        "price_percentage_change_24h": "0",
        "volume_24h": "0",
        "volume_percentage_change_24h": "0",
        "base_increment": plain(rules.base_increment),
        "quote_increment": plain(rules.quote_increment),
        "quote_min_size": plain(rules.quote_min_size),
        "quote_max_size": plain(rules.quote_max_size),
        "base_min_size": plain(rules.base_min_size),
        "base_max_size": plain(rules.base_max_size),
        "base_name": listing.base_name,
        "quote_name": "US Dollar",
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": listing.status,
        "cancel_only": listing.cancel_only,
        "limit_only": listing.limit_only,
        "post_only": listing.post_only,
        "trading_disabled": listing.trading_disabled,
        "auction_mode": False,
        "product_type": "SPOT",
        "quote_currency_id": quote,
        "base_currency_id": base,
        "fcm_trading_session_details": None,
        "mid_market_price": "",
        "alias": "",
        "alias_to": [],
        "base_display_symbol": base,
        "quote_display_symbol": quote,
        "view_only": False,
        "price_increment": plain(rules.price_increment),
        "display_name": rules.product_id,
        "product_venue": "CBE",
        "approximate_quote_24h_volume": "0",
    }


def pricebook_json(book: L2Book, depth: int, now: datetime) -> dict[str, Any]:
    return {
        "product_id": book.product_id,
        "bids": [{"price": plain(p), "size": plain(s)} for p, s in book.bids(depth)],
        "asks": [{"price": plain(p), "size": plain(s)} for p, s in book.asks(depth)],
        "time": rfc3339(now),
    }


def _mid(book: L2Book) -> Decimal | None:
    bid, ask = book.best_bid(), book.best_ask()
    return (bid[0] + ask[0]) / 2 if bid and ask else None


def candle_json(candle: Candle) -> dict[str, str]:
    return {
        "start": str(candle.start),
        "low": plain(candle.low),
        "high": plain(candle.high),
        "open": plain(candle.open),
        "close": plain(candle.close),
        "volume": plain(candle.volume),
    }


def trade_json(trade: MarketTrade, book: L2Book) -> dict[str, Any]:
    bid, ask = book.best_bid(), book.best_ask()
    return {
        "trade_id": trade.trade_id,
        "product_id": trade.product_id,
        "price": plain(trade.price),
        "size": plain(trade.size),
        "time": rfc3339(trade.time),
        "side": trade.side.value,
        "bid": plain(bid[0]) if bid else "",
        "ask": plain(ask[0]) if ask else "",
        "exchange": "",
    }


def order_json(order: Order, outstanding_hold: Decimal) -> dict[str, Any]:
    request = order.request
    configuration = order_body(request)["order_configuration"]
    size = request.base_size if request.base_size is not None else request.quote_size
    done = (
        order.filled_size / request.base_size * 100
        if request.base_size
        else (Decimal(100) if order.status.is_terminal and order.filled_size else Decimal(0))
    )
    return {
        "order_id": order.order_id,
        "product_id": request.product_id,
        "user_id": USER_ID,
        "order_configuration": configuration,
        "side": request.side.value,
        "client_order_id": request.client_order_id,
        "status": order.status.value,
        "time_in_force": _TIME_IN_FORCE[request.kind],
        "created_time": rfc3339(order.created_time),
        "completion_percentage": plain(round(done, 2)),
        "filled_size": plain(order.filled_size),
        "average_filled_price": plain(order.average_filled_price),
        "fee": "",
        "number_of_fills": str(len(order.fills)),
        "filled_value": plain(order.filled_value),
        "pending_cancel": False,
        "size_in_quote": request.quote_size is not None,
        "total_fees": plain(order.total_fees),
        "size_inclusive_of_fees": request.quote_size is not None,
        "total_value_after_fees": plain(_value_after_fees(order)),
        "trigger_status": "INVALID_ORDER_TYPE",
        "order_type": "MARKET" if request.kind is OrderKind.MARKET_IOC else "LIMIT",
        "reject_reason": "",
        "settled": order.status.is_terminal,
        "product_type": "SPOT",
        "reject_message": "",
        "cancel_message": order.done_reason if order.status.value == "CANCELLED" else "",
        "order_placement_source": "RETAIL_ADVANCED",
        "outstanding_hold_amount": plain(outstanding_hold),
        "is_liquidation": False,
        "last_fill_time": rfc3339(order.last_fill_time) if order.last_fill_time else None,
        "edit_history": [],
        "leverage": "",
        "margin_type": "UNKNOWN_MARGIN_TYPE",
        "retail_portfolio_id": "",
        "originating_order_id": "",
        "attached_order_id": "",
        "size": plain(size) if size is not None else "",
    }


def _value_after_fees(order: Order) -> Decimal:
    if order.request.side.value == "BUY":
        return order.filled_value + order.total_fees
    return order.filled_value - order.total_fees


def fill_json(fill: Fill) -> dict[str, Any]:
    return {
        "entry_id": f"{fill.order_id}:{fill.trade_id}",
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "trade_time": rfc3339(fill.time),
        "trade_type": "FILL",
        "price": plain(fill.price),
        "size": plain(fill.size),
        "commission": plain(fill.commission),
        "product_id": fill.product_id,
        "sequence_timestamp": rfc3339(fill.time),
        "liquidity_indicator": fill.liquidity.value,
        "size_in_quote": False,
        "user_id": USER_ID,
        "side": fill.side.value,
        "retail_portfolio_id": "",
    }
