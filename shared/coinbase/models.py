"""Typed Coinbase Advanced Trade REST responses, with Decimal amounts.

Only the fields this system uses are declared; anything else Coinbase adds is ignored, so
a new field never breaks a parse. Coinbase sends numbers as strings, and sometimes sends
``""`` for an amount that does not apply yet (``average_filled_price`` of a fresh order):
:data:`Amount` reads that as zero, :data:`OptionalAmount` as ``None``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shared.money import to_decimal

__all__ = [
    "Account",
    "AccountsPage",
    "Amount",
    "BestBidAsk",
    "CancelResult",
    "Candle",
    "CreateOrderResult",
    "FeeTier",
    "Fill",
    "FillsPage",
    "L2Level",
    "MarketTrade",
    "MarketTrades",
    "Money",
    "OptionalAmount",
    "Order",
    "OrdersPage",
    "PriceBook",
    "Product",
    "ProductBook",
    "TransactionSummary",
]


def _amount(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    return to_decimal(value)


def _number_amount(value: Any) -> Decimal:
    # A few summary fields (total_volume, total_fees) come as JSON numbers, not strings.
    if isinstance(value, float):
        return Decimal(repr(value))
    return _amount(value)


def _optional_amount(value: Any) -> Decimal | None:
    return None if value is None or value == "" else to_decimal(value)


def _unix_seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected UNIX seconds as text or an integer")
    return int(value)


def _optional_time(value: Any) -> Any:
    # Coinbase marks "no time" with an empty string or Go's zero time.
    if value in (None, "") or (isinstance(value, str) and value.startswith("0001-01-01")):
        return None
    return value


Amount = Annotated[Decimal, BeforeValidator(_amount)]
NumberAmount = Annotated[Decimal, BeforeValidator(_number_amount)]
OptionalAmount = Annotated[Decimal | None, BeforeValidator(_optional_amount)]
UnixSeconds = Annotated[int, BeforeValidator(_unix_seconds)]
OptionalTime = Annotated[datetime | None, BeforeValidator(_optional_time)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Product(_Model):
    product_id: str
    price: OptionalAmount = None
    base_increment: Amount
    quote_increment: Amount
    price_increment: OptionalAmount = None
    base_min_size: Amount
    base_max_size: Amount
    quote_min_size: Amount
    quote_max_size: Amount
    status: str = ""
    trading_disabled: bool = False
    cancel_only: bool = False
    limit_only: bool = False
    post_only: bool = False
    is_disabled: bool = False
    product_type: str = "SPOT"
    base_currency_id: str = ""
    quote_currency_id: str = ""

    @property
    def tick(self) -> Decimal:
        """The price increment (Coinbase sometimes omits it; then the quote increment)."""
        return self.price_increment or self.quote_increment

    @property
    def accepts_new_orders(self) -> bool:
        return not (self.trading_disabled or self.cancel_only or self.is_disabled) and (
            self.status in ("", "online")
        )


class L2Level(_Model):
    price: Amount
    size: Amount


class PriceBook(_Model):
    product_id: str
    bids: list[L2Level] = Field(default_factory=list)
    asks: list[L2Level] = Field(default_factory=list)
    time: OptionalTime = None


class BestBidAsk(_Model):
    pricebooks: list[PriceBook]


class ProductBook(_Model):
    pricebook: PriceBook
    last: OptionalAmount = None
    mid_market: OptionalAmount = None
    spread_bps: OptionalAmount = None


class Candle(_Model):
    start: UnixSeconds
    low: Amount
    high: Amount
    open: Amount
    close: Amount
    volume: Amount

    @property
    def start_time(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)


class MarketTrade(_Model):
    trade_id: str
    product_id: str
    price: Amount
    size: Amount
    time: datetime
    side: str


class MarketTrades(_Model):
    trades: list[MarketTrade] = Field(default_factory=list)
    best_bid: OptionalAmount = None
    best_ask: OptionalAmount = None


class CreateOrderResult(_Model):
    """What ``create_order`` returns: the venue's order id for our client order id."""

    order_id: str
    client_order_id: str
    product_id: str
    side: str
    resolved_by_lookup: bool = False


class Order(_Model):
    order_id: str
    client_order_id: str = ""
    product_id: str
    side: str
    status: str
    order_type: str = ""
    time_in_force: str = ""
    order_configuration: dict[str, dict[str, Any]] = Field(default_factory=dict)
    created_time: OptionalTime = None
    last_fill_time: OptionalTime = None
    filled_size: Amount = Decimal(0)
    filled_value: Amount = Decimal(0)
    average_filled_price: Amount = Decimal(0)
    total_fees: Amount = Decimal(0)
    number_of_fills: Amount = Decimal(0)
    completion_percentage: Amount = Decimal(0)
    reject_reason: str = ""
    cancel_message: str = ""


class OrdersPage(_Model):
    orders: list[Order] = Field(default_factory=list)
    has_next: bool = False
    cursor: str = ""


class Fill(_Model):
    entry_id: str = ""
    trade_id: str
    order_id: str
    product_id: str
    side: str
    price: Amount
    size: Amount
    commission: Amount
    liquidity_indicator: str
    trade_time: datetime
    size_in_quote: bool = False


class FillsPage(_Model):
    fills: list[Fill] = Field(default_factory=list)
    cursor: str = ""


class CancelResult(_Model):
    success: bool
    failure_reason: str = ""
    order_id: str


class Money(_Model):
    value: Amount
    currency: str


class Account(_Model):
    uuid: str
    currency: str
    available_balance: Money
    hold: Money | None = None
    active: bool = True


class AccountsPage(_Model):
    accounts: list[Account] = Field(default_factory=list)
    has_next: bool = False
    cursor: str = ""


class FeeTier(_Model):
    pricing_tier: str = ""
    maker_fee_rate: Amount
    taker_fee_rate: Amount


class TransactionSummary(_Model):
    total_volume: NumberAmount = Decimal(0)
    total_fees: NumberAmount = Decimal(0)
    fee_tier: FeeTier
