"""Parsing Coinbase WebSocket frames, with the sample shapes from Coinbase's documentation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.coinbase.book import BookSide
from shared.coinbase.errors import CoinbaseError
from shared.coinbase.ws_messages import (
    CandlesMessage,
    HeartbeatsMessage,
    L2DataMessage,
    MarketTradesMessage,
    SubscriptionsMessage,
    TickerMessage,
    UnknownChannelMessage,
    UserMessage,
    WsProtocolError,
    WsServerError,
    parse_message,
)
from shared.money import Side

STAMP = "2023-02-09T20:32:50.714964855Z"
# Nanoseconds do not fit a datetime: the last three digits go.
STAMP_UTC = datetime(2023, 2, 9, 20, 32, 50, 714964, tzinfo=UTC)

TICKER = {
    "type": "ticker", "product_id": "BTC-USD", "price": "21932.98", "volume_24_h": "16038.28",
    "low_24_h": "21835.29", "high_24_h": "23011.18", "low_52_w": "15460", "high_52_w": "48240",
    "price_percent_chg_24_h": "-4.15", "best_bid": "21931.98", "best_bid_quantity": "8000.21",
    "best_ask": "21933.98", "best_ask_quantity": "8038.07",
}  # fmt: skip
ORDER = {
    "order_id": "11111-00000-000000", "client_order_id": "0000-00000-000000",
    "product_id": "BTC-USD", "order_side": "BUY", "order_type": "Limit", "status": "OPEN",
    "avg_price": "0", "cumulative_quantity": "0", "leaves_quantity": "0.01",
    "filled_value": "0", "total_fees": "0", "limit_price": "50000",
    "creation_time": "2022-12-07T19:42:18.719312Z", "number_of_fills": "0",
    "time_in_force": "GOOD_UNTIL_CANCELLED", "post_only": False,
}  # fmt: skip


def frame(channel: str, events: list[dict[str, Any]], sequence_num: object = 7) -> str:
    envelope = {"channel": channel, "client_id": "", "timestamp": STAMP}
    return json.dumps({**envelope, "sequence_num": sequence_num, "events": events})


def test_envelope_fields_are_typed_and_the_timestamp_is_utc() -> None:
    message = parse_message(frame("heartbeats", [], sequence_num=42))
    assert isinstance(message, HeartbeatsMessage)
    assert message.sequence_num == 42 and message.client_id == ""
    assert message.timestamp == STAMP_UTC and message.timestamp.utcoffset() is not None


def test_subscriptions_confirmation() -> None:
    message = parse_message(
        frame("subscriptions", [{"subscriptions": {"level2": ["BTC-USD"], "heartbeats": []}}])
    )
    assert isinstance(message, SubscriptionsMessage)
    assert message.events[0].subscriptions == {"level2": ("BTC-USD",), "heartbeats": ()}


@pytest.mark.parametrize("counter", ["3049", 3049])
def test_heartbeat_counter_as_text_or_number_and_go_time_kept_as_text(counter: str | int) -> None:
    go_time = "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105"
    message = parse_message(
        frame("heartbeats", [{"current_time": go_time, "heartbeat_counter": counter}])
    )
    assert isinstance(message, HeartbeatsMessage)
    assert message.events[0].heartbeat_counter == 3049
    assert message.events[0].current_time == go_time


@pytest.mark.parametrize("channel", ["ticker", "ticker_batch"])
def test_ticker_prices_are_exact_decimals(channel: str) -> None:
    message = parse_message(frame(channel, [{"type": "snapshot", "tickers": [TICKER]}]))
    assert isinstance(message, TickerMessage) and message.product_id == "BTC-USD"
    ticker = message.events[0].tickers[0]
    assert message.events[0].type == "snapshot"
    assert ticker.price == Decimal("21932.98") and str(ticker.price) == "21932.98"
    assert ticker.best_bid == Decimal("21931.98") and ticker.best_ask_quantity == Decimal("8038.07")
    assert ticker.price_percent_chg_24_h == Decimal("-4.15") and ticker.high_52_w == 48240
    assert all(type(value) is Decimal for value in (ticker.volume_24_h, ticker.low_24_h))


def test_level2_updates_keep_absolute_sizes_exactly() -> None:
    updates = [
        {"side": "bid", "event_time": STAMP, "price_level": "21921.73",
         "new_quantity": "0.06317902"},
        {"side": "offer", "event_time": STAMP, "price_level": "21921.74", "new_quantity": "0"},
    ]  # fmt: skip
    message = parse_message(
        frame("l2_data", [{"type": "update", "product_id": "BTC-USD", "updates": updates}])
    )
    assert isinstance(message, L2DataMessage) and message.product_id == "BTC-USD"
    bid, offer = message.events[0].updates
    assert (bid.side, bid.price_level, bid.new_quantity) == (
        BookSide.BID, Decimal("21921.73"), Decimal("0.06317902"),
    )  # fmt: skip
    assert str(bid.new_quantity) == "0.06317902" and bid.event_time == STAMP_UTC
    assert offer.side is BookSide.OFFER and offer.new_quantity == 0


def test_market_trades() -> None:
    trade = {"trade_id": "000000000", "product_id": "ETH-USD", "price": "1260.01",
             "size": "0.3", "side": "BUY", "time": "2019-08-14T20:42:27.265Z"}  # fmt: skip
    message = parse_message(frame("market_trades", [{"type": "snapshot", "trades": [trade]}]))
    assert isinstance(message, MarketTradesMessage) and message.product_id == "ETH-USD"
    parsed = message.events[0].trades[0]
    assert (parsed.price, parsed.size) == (Decimal("1260.01"), Decimal("0.3"))
    assert parsed.side is Side.BUY
    assert parsed.time == datetime(2019, 8, 14, 20, 42, 27, 265000, tzinfo=UTC)


def test_candles_start_is_unix_seconds() -> None:
    candle = {"start": "1688998200", "high": "1867.72", "low": "1865.63", "open": "1867.38",
              "close": "1866.81", "volume": "0.20269406", "product_id": "ETH-USD"}  # fmt: skip
    message = parse_message(frame("candles", [{"type": "update", "candles": [candle]}]))
    assert isinstance(message, CandlesMessage) and message.product_id == "ETH-USD"
    parsed = message.events[0].candles[0]
    assert parsed.start == datetime(2023, 7, 10, 14, 10, tzinfo=UTC)  # 1688998200 s
    assert (parsed.open, parsed.high, parsed.low, parsed.close) == (
        Decimal("1867.38"), Decimal("1867.72"), Decimal("1865.63"), Decimal("1866.81"),
    )  # fmt: skip
    assert parsed.volume == Decimal("0.20269406")


def test_user_orders_with_extra_fields_ignored_and_an_empty_limit_price() -> None:
    market = {**ORDER, "order_id": "2", "order_type": "Market", "limit_price": "",
              "status": "FILLED", "avg_price": "50001.5", "number_of_fills": 2}  # fmt: skip
    message = parse_message(frame("user", [{"type": "snapshot", "orders": [ORDER, market]}]))
    assert isinstance(message, UserMessage) and message.product_id == "BTC-USD"
    limit_order, market_order = message.events[0].orders
    assert limit_order.order_side is Side.BUY and limit_order.status == "OPEN"
    assert limit_order.limit_price == Decimal("50000")
    assert limit_order.leaves_quantity == Decimal("0.01") and limit_order.number_of_fills == 0
    assert limit_order.creation_time == datetime(2022, 12, 7, 19, 42, 18, 719312, tzinfo=UTC)
    assert market_order.limit_price is None and market_order.avg_price == Decimal("50001.5")
    assert market_order.number_of_fills == 2


def test_an_error_frame_is_a_value_not_an_exception() -> None:
    message = parse_message(b'{"type": "error", "message": "failure to subscribe"}')
    assert message == WsServerError(type="error", message="failure to subscribe")


def test_an_unknown_channel_keeps_its_raw_events() -> None:
    message = parse_message(frame("status", [{"type": "snapshot", "products": [{"id": "X"}]}]))
    assert isinstance(message, UnknownChannelMessage) and message.channel == "status"
    assert message.events == ({"type": "snapshot", "products": [{"id": "X"}]},)
    assert message.product_id is None


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        b"\xff\xfe",
        "[1, 2]",
        '{"events": []}',  # neither a channel nor an error
        frame("l2_data", [{"type": "update", "product_id": "BTC-USD", "updates": [{}]}]),
        frame("ticker", [{"type": "sometimes", "tickers": [TICKER]}]),
        frame("heartbeats", [], sequence_num="seven"),
        json.dumps({"channel": "ticker", "events": []}),  # no timestamp or sequence_num
    ],
)
def test_malformed_frames_raise_a_coinbase_protocol_error(raw: str | bytes) -> None:
    with pytest.raises(WsProtocolError) as caught:
        parse_message(raw)
    assert isinstance(caught.value, CoinbaseError)


@pytest.mark.parametrize(
    "level",
    [
        {"side": "bid", "event_time": STAMP, "price_level": 21921.73, "new_quantity": "1"},
        {"side": "bid", "event_time": STAMP, "price_level": "0", "new_quantity": "1"},
        {"side": "bid", "event_time": STAMP, "price_level": "1", "new_quantity": "-1"},
        {"side": "buy", "event_time": STAMP, "price_level": "1", "new_quantity": "1"},
        {"side": "bid", "event_time": STAMP[:19], "price_level": "1", "new_quantity": "1"},
    ],
    ids=["float price", "zero price", "negative size", "unknown side", "naive time"],
)
def test_levels_that_cannot_be_money_are_refused(level: dict[str, Any]) -> None:
    with pytest.raises(WsProtocolError):
        parse_message(frame("l2_data", [{"type": "update", "product_id": "X", "updates": [level]}]))
