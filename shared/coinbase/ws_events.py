"""What the market-data WebSocket feed is told (its settings) and what it tells its consumer.

The consumer of :class:`shared.coinbase.ws.MarketDataFeed` receives :data:`FeedEvent`
values; ``feed_events`` turns one channel message into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.coinbase.book import L2Book, SequenceGap
from shared.coinbase.ws_messages import (
    Candle,
    CandlesMessage,
    L2DataMessage,
    MarketTradesMessage,
    Ticker,
    TickerMessage,
    Trade,
    UserMessage,
    UserOrder,
    WsMessage,
)

__all__ = [
    "HEARTBEATS",
    "BookChanged",
    "BookReset",
    "CandlesReceived",
    "Connected",
    "Disconnected",
    "FeedEvent",
    "FeedSettings",
    "GapDetected",
    "TickerReceived",
    "TradesReceived",
    "UserOrdersReceived",
    "data_events",
    "has_snapshot",
]

HEARTBEATS = "heartbeats"


@dataclass(frozen=True)
class FeedSettings:
    url: str  # wss://advanced-trade-ws.coinbase.com, or ws://127.0.0.1:8060/ws in tests
    product_ids: tuple[str, ...]
    channels: tuple[str, ...]  # e.g. ("level2", "ticker"); heartbeats are always added
    sequence_scope: Literal["connection", "product"] = "connection"
    heartbeat_timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    subscribe_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must be ws:// or wss://, got {self.url!r}")
        if not self.product_ids or not self.channels:
            raise ValueError("product_ids and channels must not be empty")
        if self.sequence_scope not in ("connection", "product"):
            raise ValueError(f"unknown sequence_scope {self.sequence_scope!r}")
        timeouts = (self.heartbeat_timeout_s, self.subscribe_timeout_s, self.backoff_initial_s)
        if min(timeouts) <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("timeouts must be positive and backoff_max_s >= backoff_initial_s")

    @property
    def subscribed_channels(self) -> tuple[str, ...]:
        """Heartbeats first, then the configured channels, each once."""
        return tuple(dict.fromkeys((HEARTBEATS, *self.channels)))


# --- what the consumer receives ----------------------------------------------------


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class Disconnected:
    reason: str


@dataclass(frozen=True)
class GapDetected:
    gap: SequenceGap
    product_id: str | None  # None with connection-wide numbering
    channel: str


@dataclass(frozen=True)
class BookReset:
    product_id: str


@dataclass(frozen=True)
class BookChanged:
    """``book`` is the live book, updated in place: copy what must outlive the callback."""

    product_id: str
    book: L2Book
    is_snapshot: bool
    event_time: datetime


@dataclass(frozen=True)
class TickerReceived:
    ticker: Ticker


@dataclass(frozen=True)
class TradesReceived:
    trades: tuple[Trade, ...]
    is_snapshot: bool


@dataclass(frozen=True)
class CandlesReceived:
    candles: tuple[Candle, ...]
    is_snapshot: bool


@dataclass(frozen=True)
class UserOrdersReceived:
    orders: tuple[UserOrder, ...]
    is_snapshot: bool


FeedEvent = (
    Connected
    | Disconnected
    | GapDetected
    | BookReset
    | BookChanged
    | TickerReceived
    | TradesReceived
    | CandlesReceived
    | UserOrdersReceived
)


def has_snapshot(message: WsMessage) -> bool:
    if isinstance(
        message, TickerMessage | L2DataMessage | MarketTradesMessage | CandlesMessage | UserMessage
    ):
        return any(event.type == "snapshot" for event in message.events)
    return False


def data_events(message: WsMessage) -> list[FeedEvent]:
    """What a ticker, trades, candles or user message tells the consumer."""
    match message:
        case TickerMessage():
            return [TickerReceived(ticker) for event in message.events for ticker in event.tickers]
        case MarketTradesMessage():
            return [TradesReceived(e.trades, e.type == "snapshot") for e in message.events]
        case CandlesMessage():
            return [CandlesReceived(e.candles, e.type == "snapshot") for e in message.events]
        case UserMessage():
            return [UserOrdersReceived(e.orders, e.type == "snapshot") for e in message.events]
    return []
