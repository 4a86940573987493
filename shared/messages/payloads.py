"""Payloads of every stream in the system, one pydantic model per message type.

Commands are imperative (``PlaceOrder``), events past tense (``OrderFilled``).
Each class names its wire ``TYPE``, schema ``VERSION`` and home ``STREAM``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.messages.types import Dec, Name, ProductId, UtcDatetime
from shared.money import Side

__all__ = [
    "BookLevel",
    "BookUpdated",
    "CancelOrders",
    "CandleClosed",
    "DecisionOutcome",
    "IntentFinished",
    "IntentKind",
    "Liquidity",
    "LiquidityPreference",
    "OrderFilled",
    "OrderStatus",
    "OrderUpdated",
    "Payload",
    "PlaceOrder",
    "ProposalAction",
    "ProposalDecided",
    "TickUpdated",
    "TradeProposed",
    "TradingMode",
    "TradingStateChanged",
]


class TradingMode(StrEnum):
    BACKTEST = "BACKTEST"
    PAPER = "PAPER"
    LIVE = "LIVE"


class Payload(BaseModel):
    """Base of every stream payload: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    STREAM: ClassVar[str]


# --- market data -----------------------------------------------------------------


class TickUpdated(Payload):
    """Best bid/ask and last trade of one product changed."""

    TYPE: ClassVar[str] = "TickUpdated"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "md.ticks"

    product_id: ProductId
    best_bid: Dec = Field(gt=0)
    best_bid_size: Dec = Field(ge=0)
    best_ask: Dec = Field(gt=0)
    best_ask_size: Dec = Field(ge=0)
    last_price: Dec | None = Field(default=None, gt=0)
    last_size: Dec | None = Field(default=None, ge=0)
    exchange_time: UtcDatetime

    @model_validator(mode="after")
    def _not_crossed(self) -> TickUpdated:
        if self.best_bid > self.best_ask:
            raise ValueError(f"crossed quote: bid {self.best_bid} > ask {self.best_ask}")
        return self


class CandleClosed(Payload):
    """A candle whose bucket has ended; published once per product and bucket."""

    TYPE: ClassVar[str] = "CandleClosed"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "md.candles"

    product_id: ProductId
    granularity_s: int = Field(gt=0)
    start: UtcDatetime
    open: Dec = Field(gt=0)
    high: Dec = Field(gt=0)
    low: Dec = Field(gt=0)
    close: Dec = Field(gt=0)
    volume: Dec = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> CandleClosed:
        if not (self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high):
            raise ValueError("candle violates low <= open, close <= high")
        return self


class BookLevel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    price: Dec = Field(gt=0)
    size: Dec = Field(gt=0)


class BookUpdated(Payload):
    """Top-N levels of one product's L2 book (bids best first, asks best first)."""

    TYPE: ClassVar[str] = "BookUpdated"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "md.books"

    product_id: ProductId
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    exchange_time: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> BookUpdated:
        bid_prices = [level.price for level in self.bids]
        ask_prices = [level.price for level in self.asks]
        if bid_prices != sorted(bid_prices, reverse=True) or len(set(bid_prices)) != len(
            bid_prices
        ):
            raise ValueError("bids must be strictly descending by price")
        if ask_prices != sorted(ask_prices) or len(set(ask_prices)) != len(ask_prices):
            raise ValueError("asks must be strictly ascending by price")
        if bid_prices and ask_prices and bid_prices[0] >= ask_prices[0]:
            raise ValueError("crossed book: best bid >= best ask")
        return self


# --- signal and risk -------------------------------------------------------------


class ProposalAction(StrEnum):
    ENTRY = "ENTRY"
    EXIT = "EXIT"


class TradeProposed(Payload):
    """A strategy wants to enter or exit; risk decides."""

    TYPE: ClassVar[str] = "TradeProposed"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "signal.proposals"

    proposal_id: Name
    strategy: str = Field(max_length=64)
    product_id: ProductId
    side: Side
    action: ProposalAction
    quote_size: Dec = Field(gt=0, description="Desired notional in quote currency (USD).")
    reference_mid: Dec = Field(gt=0, description="Mid price when the strategy decided.")
    stop_loss: Dec | None = Field(default=None, gt=0, description="Exit below this price.")
    take_profit: Dec | None = Field(default=None, gt=0, description="Exit above this price.")
    granularity_s: int | None = Field(default=None, gt=0, description="Deciding candle's size.")
    candle_start: UtcDatetime | None = Field(default=None, description="Deciding candle.")
    reason: str = ""
    decided_at: UtcDatetime

    @model_validator(mode="after")
    def _levels_ordered(self) -> TradeProposed:
        if self.stop_loss is not None and self.take_profit is not None:
            if self.stop_loss >= self.take_profit:
                raise ValueError("stop_loss must be below take_profit")
        return self


class DecisionOutcome(StrEnum):
    APPROVED = "APPROVED"
    RESIZED = "RESIZED"
    REJECTED = "REJECTED"


class ProposalDecided(Payload):
    """Risk's verdict on a proposal, with machine-readable reasons."""

    TYPE: ClassVar[str] = "ProposalDecided"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "risk.decisions"

    proposal_id: Name
    product_id: ProductId
    outcome: DecisionOutcome
    strategy: str = Field(default="", max_length=64)
    action: ProposalAction = ProposalAction.ENTRY
    requested_quote_size: Dec = Field(gt=0)
    approved_quote_size: Dec = Field(ge=0)
    exit_base_size: Dec | None = Field(
        default=None, gt=0, description="An approved exit sells this much of the base asset."
    )
    reasons: tuple[str, ...] = ()
    decided_at: UtcDatetime

    @model_validator(mode="after")
    def _sizes_match_outcome(self) -> ProposalDecided:
        if self.outcome is DecisionOutcome.REJECTED and self.approved_quote_size != 0:
            raise ValueError("a rejected proposal approves nothing")
        if self.outcome is not DecisionOutcome.REJECTED and self.approved_quote_size <= 0:
            raise ValueError("an approved proposal needs a positive size")
        if self.approved_quote_size > self.requested_quote_size:
            raise ValueError("risk never sizes a proposal up")
        return self


class IntentKind(StrEnum):
    ENTRY = "ENTRY"
    EXIT = "EXIT"
    FLATTEN = "FLATTEN"


class LiquidityPreference(StrEnum):
    MAKER_FIRST = "MAKER_FIRST"
    TAKER = "TAKER"


class PlaceOrder(Payload):
    """Command from risk to execution: get this order done."""

    TYPE: ClassVar[str] = "PlaceOrder"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "risk.orders"

    intent_id: Name
    kind: IntentKind
    product_id: ProductId
    side: Side
    base_size: Dec | None = Field(default=None, gt=0)
    quote_size: Dec | None = Field(default=None, gt=0)
    reference_mid: Dec = Field(gt=0)
    liquidity: LiquidityPreference
    proposal_id: Name | None = None
    issued_at: UtcDatetime

    @model_validator(mode="after")
    def _one_size(self) -> PlaceOrder:
        if (self.base_size is None) == (self.quote_size is None):
            raise ValueError("give exactly one of base_size and quote_size")
        return self


# --- execution -------------------------------------------------------------------


class CancelOrders(Payload):
    """Command from risk to execution: cancel the open orders of these kinds and products."""

    TYPE: ClassVar[str] = "CancelOrders"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "risk.orders"

    command_id: str
    product_ids: tuple[ProductId, ...] = Field(default=(), description="Empty: every product.")
    kinds: tuple[IntentKind, ...] = Field(min_length=1)
    reason: str
    issued_at: UtcDatetime


class TradingStateChanged(Payload):
    """An operator (or risk itself) paused, resumed or flattened: the audit trail."""

    TYPE: ClassVar[str] = "TradingStateChanged"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "risk.control"

    action: str = Field(pattern="^(PAUSE|RESUME|FLATTEN)$")
    actor: str
    reason: str
    entries_allowed: bool
    flatten_id: str | None = None
    changed_at: UtcDatetime


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


class OrderUpdated(Payload):
    """An order changed state."""

    TYPE: ClassVar[str] = "OrderUpdated"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "exec.reports"

    client_order_id: str
    intent_id: Name
    venue_order_id: str | None = None
    product_id: ProductId
    side: Side
    status: OrderStatus
    filled_size: Dec = Field(ge=0)
    average_price: Dec | None = Field(default=None, gt=0)
    reason: str = ""
    mode: TradingMode
    updated_at: UtcDatetime


class IntentFinished(Payload):
    """Execution is done with an intent: nothing more will fill for it."""

    TYPE: ClassVar[str] = "IntentFinished"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "exec.reports"

    intent_id: Name
    kind: IntentKind
    product_id: ProductId
    side: Side
    status: OrderStatus = Field(description="FILLED, CANCELLED, REJECTED or EXPIRED.")
    filled_base: Dec = Field(ge=0)
    filled_quote: Dec = Field(ge=0)
    reason: str = ""
    mode: TradingMode
    finished_at: UtcDatetime

    @model_validator(mode="after")
    def _terminal(self) -> IntentFinished:
        if self.status in (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            raise ValueError(f"an intent cannot finish as {self.status.value}")
        return self


class OrderFilled(Payload):
    """One fill of an order, as the venue reported it."""

    TYPE: ClassVar[str] = "OrderFilled"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = "exec.reports"

    client_order_id: str
    intent_id: Name
    trade_id: str
    product_id: ProductId
    side: Side
    price: Dec = Field(gt=0)
    size: Dec = Field(gt=0)
    fee: Dec = Field(ge=0)
    liquidity: Liquidity
    arrival_mid: Dec = Field(gt=0, description="Mid when the order arrived, for slippage.")
    mode: TradingMode
    filled_at: UtcDatetime
