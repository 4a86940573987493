"""Coinbase Advanced Trade WebSocket frames as typed, immutable values.

Every data frame is an envelope ``{"channel", "client_id", "timestamp", "sequence_num",
"events"}``; the channel names the shape of its events. Prices and sizes arrive as
strings and become exact ``Decimal`` (a JSON number is refused: it has been a float on
the way). Timestamps are RFC 3339 with nanoseconds; Python keeps microseconds, so the
last three digits are dropped. Unknown fields are ignored so that additions on Coinbase's
side do not break the feed; unknown channels parse into :class:`UnknownChannelMessage`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, cast

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError

from shared.coinbase.book import BookSide
from shared.coinbase.errors import CoinbaseError
from shared.messages.types import Dec, UtcDatetime
from shared.money import Side, to_decimal

__all__ = [
    "Candle",
    "CandlesEvent",
    "CandlesMessage",
    "EventKind",
    "HeartbeatEvent",
    "HeartbeatsMessage",
    "L2DataMessage",
    "L2Event",
    "L2Update",
    "MarketTradesMessage",
    "SubscriptionsEvent",
    "SubscriptionsMessage",
    "Ticker",
    "TickerEvent",
    "TickerMessage",
    "Trade",
    "TradesEvent",
    "UnknownChannelMessage",
    "UserEvent",
    "UserMessage",
    "UserOrder",
    "WsEnvelope",
    "WsMessage",
    "WsProtocolError",
    "WsServerError",
    "parse_message",
]

EventKind = Literal["snapshot", "update"]


class WsProtocolError(CoinbaseError):
    """A frame that is not JSON or does not have the shape its channel promises."""


def _decimal_or_none(value: Any) -> Decimal | None:
    # Coinbase sends "" for a price that does not apply (a market order's limit price).
    if value is None or value == "":
        return None
    return to_decimal(value)


def _from_unix_seconds(value: Any) -> datetime:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    raise ValueError("expected whole unix seconds, e.g. '1688998200'")


OptionalDec = Annotated[Decimal | None, BeforeValidator(_decimal_or_none)]
PositiveDec = Annotated[Dec, Field(gt=0)]
NonNegativeDec = Annotated[Dec, Field(ge=0)]
UnixSeconds = Annotated[datetime, PlainValidator(_from_unix_seconds)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- events ------------------------------------------------------------------------


class SubscriptionsEvent(_Frozen):
    subscriptions: dict[str, tuple[str, ...]]


class HeartbeatEvent(_Frozen):
    current_time: str  # Go's time.String() format, not RFC 3339: kept as text
    heartbeat_counter: int


class Ticker(_Frozen):
    product_id: str
    price: PositiveDec
    volume_24_h: OptionalDec = None
    low_24_h: OptionalDec = None
    high_24_h: OptionalDec = None
    low_52_w: OptionalDec = None
    high_52_w: OptionalDec = None
    price_percent_chg_24_h: OptionalDec = None
    best_bid: OptionalDec = None
    best_bid_quantity: OptionalDec = None
    best_ask: OptionalDec = None
    best_ask_quantity: OptionalDec = None


class TickerEvent(_Frozen):
    type: EventKind
    tickers: tuple[Ticker, ...]


class L2Update(_Frozen):
    side: BookSide
    event_time: UtcDatetime
    price_level: PositiveDec
    new_quantity: NonNegativeDec  # the absolute size now at this price; 0 removes it


class L2Event(_Frozen):
    type: EventKind
    product_id: str
    updates: tuple[L2Update, ...]


class Trade(_Frozen):
    trade_id: str
    product_id: str
    price: PositiveDec
    size: PositiveDec
    side: Side
    time: UtcDatetime


class TradesEvent(_Frozen):
    type: EventKind
    trades: tuple[Trade, ...]


class Candle(_Frozen):
    start: UnixSeconds
    open: PositiveDec
    high: PositiveDec
    low: PositiveDec
    close: PositiveDec
    volume: NonNegativeDec
    product_id: str


class CandlesEvent(_Frozen):
    type: EventKind
    candles: tuple[Candle, ...]


class UserOrder(_Frozen):
    """One order's state; ``status`` and ``order_type`` stay text so new values still parse."""

    order_id: str
    client_order_id: str = ""
    product_id: str
    order_side: Side
    order_type: str
    status: str
    avg_price: NonNegativeDec
    cumulative_quantity: NonNegativeDec
    leaves_quantity: NonNegativeDec
    filled_value: NonNegativeDec
    total_fees: NonNegativeDec
    limit_price: OptionalDec = None
    stop_price: OptionalDec = None
    creation_time: UtcDatetime
    number_of_fills: int = 0
    cancel_reason: str = ""
    reject_reason: str = ""


class UserEvent(_Frozen):
    type: EventKind
    orders: tuple[UserOrder, ...] = ()


# --- messages ----------------------------------------------------------------------


class WsEnvelope(_Frozen):
    """What every data frame carries; subclasses name the channel and its events."""

    channel: str
    client_id: str = ""
    timestamp: UtcDatetime
    sequence_num: int

    @property
    def product_id(self) -> str | None:
        """The product this message is about: that of its first event or first item."""
        return None


class SubscriptionsMessage(WsEnvelope):
    channel: Literal["subscriptions"]
    events: tuple[SubscriptionsEvent, ...]


class HeartbeatsMessage(WsEnvelope):
    channel: Literal["heartbeats"]
    events: tuple[HeartbeatEvent, ...]


class TickerMessage(WsEnvelope):
    channel: Literal["ticker", "ticker_batch"]
    events: tuple[TickerEvent, ...]

    @property
    def product_id(self) -> str | None:
        first = self.events[0].tickers if self.events else ()
        return first[0].product_id if first else None


class L2DataMessage(WsEnvelope):
    channel: Literal["l2_data", "level2"]
    events: tuple[L2Event, ...]

    @property
    def product_id(self) -> str | None:
        return self.events[0].product_id if self.events else None


class MarketTradesMessage(WsEnvelope):
    channel: Literal["market_trades"]
    events: tuple[TradesEvent, ...]

    @property
    def product_id(self) -> str | None:
        first = self.events[0].trades if self.events else ()
        return first[0].product_id if first else None


class CandlesMessage(WsEnvelope):
    channel: Literal["candles"]
    events: tuple[CandlesEvent, ...]

    @property
    def product_id(self) -> str | None:
        first = self.events[0].candles if self.events else ()
        return first[0].product_id if first else None


class UserMessage(WsEnvelope):
    channel: Literal["user"]
    events: tuple[UserEvent, ...]

    @property
    def product_id(self) -> str | None:
        first = self.events[0].orders if self.events else ()
        return first[0].product_id if first else None


class UnknownChannelMessage(WsEnvelope):
    """A channel this client does not model; its events are kept as parsed JSON."""

    events: tuple[dict[str, Any], ...] = ()

    @property
    def product_id(self) -> str | None:
        found = self.events[0].get("product_id") if self.events else None
        return found if isinstance(found, str) else None


class WsServerError(_Frozen):
    """An ``{"type": "error"}`` frame: the server refused something (often a subscribe)."""

    type: Literal["error"]
    message: str = ""


WsMessage = (
    SubscriptionsMessage
    | HeartbeatsMessage
    | TickerMessage
    | L2DataMessage
    | MarketTradesMessage
    | CandlesMessage
    | UserMessage
    | UnknownChannelMessage
    | WsServerError
)

_BY_CHANNEL: dict[str, type[WsEnvelope]] = {
    "subscriptions": SubscriptionsMessage,
    "heartbeats": HeartbeatsMessage,
    "ticker": TickerMessage,
    "ticker_batch": TickerMessage,
    "l2_data": L2DataMessage,
    "level2": L2DataMessage,
    "market_trades": MarketTradesMessage,
    "candles": CandlesMessage,
    "user": UserMessage,
}


def _describe(exc: ValidationError) -> str:
    # Locations and reasons only: pydantic's own text repeats the input values.
    problems = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return "; ".join(problems)


def parse_message(raw: str | bytes) -> WsMessage:
    """Parse one frame into its typed message; raise :class:`WsProtocolError` if malformed."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WsProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise WsProtocolError(f"frame is a JSON {type(document).__name__}, not an object")
    model: type[WsEnvelope] | type[WsServerError]
    if document.get("type") == "error":
        model = WsServerError
    elif isinstance(channel := document.get("channel"), str):
        model = _BY_CHANNEL.get(channel, UnknownChannelMessage)
    else:
        raise WsProtocolError("frame has no channel and is not an error")
    try:
        return cast(WsMessage, model.model_validate(document))
    except ValidationError as exc:
        raise WsProtocolError(f"malformed {model.__name__}: {_describe(exc)}") from None
