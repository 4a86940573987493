"""Values the matching engine works with: product rules, order requests, orders, fills.

Names and status values follow Coinbase Advanced Trade, so the exchange simulator can
show them as they are and the paper venue reports what a real fill would report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from shared.messages.payloads import Liquidity
from shared.money import Side

__all__ = [
    "FeeRates",
    "Fill",
    "Liquidity",
    "Order",
    "OrderKind",
    "OrderRejected",
    "OrderRequest",
    "OrderStatus",
    "ProductRules",
]


class OrderKind(StrEnum):
    """Coinbase's ``order_configuration`` keys this system uses."""

    MARKET_IOC = "market_market_ioc"
    LIMIT_GTC = "limit_limit_gtc"
    LIMIT_GTD = "limit_limit_gtd"


class OrderStatus(StrEnum):
    """The venue's status vocabulary (Coinbase's), not the pipeline's ``exec.reports`` one."""

    PENDING = "PENDING"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self not in (OrderStatus.PENDING, OrderStatus.OPEN)


@dataclass(frozen=True)
class ProductRules:
    """A product's increments and size limits, as Coinbase's product endpoint gives them."""

    product_id: str
    base_increment: Decimal
    quote_increment: Decimal
    price_increment: Decimal
    base_min_size: Decimal
    base_max_size: Decimal
    quote_min_size: Decimal
    quote_max_size: Decimal


@dataclass(frozen=True)
class FeeRates:
    """Fractions of notional: ``Decimal("0.006")`` is 60 bps."""

    maker: Decimal
    taker: Decimal


@dataclass(frozen=True)
class OrderRequest:
    """One order as a client asks for it; exactly one of base_size / quote_size is set.

    ``quote_size`` is only for market orders; for a market BUY it is the total to spend,
    fees included (Coinbase's semantics).
    """

    client_order_id: str
    product_id: str
    side: Side
    kind: OrderKind
    base_size: Decimal | None = None
    quote_size: Decimal | None = None
    limit_price: Decimal | None = None
    post_only: bool = False
    end_time: datetime | None = None


@dataclass(frozen=True)
class Fill:
    trade_id: str
    order_id: str
    product_id: str
    side: Side
    price: Decimal
    size: Decimal
    commission: Decimal
    liquidity: Liquidity
    time: datetime

    @property
    def value(self) -> Decimal:
        return self.price * self.size


@dataclass
class Order:
    """An order the venue accepted, and what has happened to it since."""

    order_id: str
    request: OrderRequest
    created_time: datetime
    status: OrderStatus = OrderStatus.OPEN
    filled_size: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    total_fees: Decimal = Decimal(0)
    fills: list[Fill] = field(default_factory=list)
    last_fill_time: datetime | None = None
    done_reason: str = ""

    @property
    def average_filled_price(self) -> Decimal:
        return self.filled_value / self.filled_size if self.filled_size else Decimal(0)

    @property
    def remaining_base(self) -> Decimal | None:
        """Base size still to fill, when the order is sized in base."""
        size = self.request.base_size
        return None if size is None else size - self.filled_size


class OrderRejected(Exception):
    """The order is refused as a whole; ``failure_reason`` uses Coinbase's codes."""

    def __init__(self, failure_reason: str, message: str) -> None:
        super().__init__(f"{failure_reason}: {message}")
        self.failure_reason = failure_reason
        self.message = message
