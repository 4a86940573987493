"""Checks an order request against its product's rules, with Coinbase's failure reasons.

Checks run in this order and the first failure wins: product, order configuration,
positive sizes and price, precision, size limits, end time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from shared.matching.types import OrderKind, OrderRejected, OrderRequest, ProductRules
from shared.money import Rounding, Side, quantize

__all__ = ["validate_request"]

UNSUPPORTED = "UNSUPPORTED_ORDER_CONFIGURATION"
BASE_TOO_SMALL = "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL"
BASE_TOO_LARGE = "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE"
QUOTE_TOO_SMALL = "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"
QUOTE_TOO_LARGE = "PREVIEW_INVALID_QUOTE_SIZE_TOO_LARGE"


def validate_request(
    request: OrderRequest, rules: Mapping[str, ProductRules], now: datetime
) -> ProductRules:
    """The request's product rules; raises ``OrderRejected`` when the venue would refuse it."""
    product = rules.get(request.product_id)
    if product is None:
        raise OrderRejected("INVALID_PRODUCT_ID", f"unknown product {request.product_id!r}")
    is_market = request.kind is OrderKind.MARKET_IOC
    problem = _market_problem(request) if is_market else _limit_problem(request)
    if problem:
        raise OrderRejected(UNSUPPORTED, problem)
    _check_positive(request)
    _check_precision(request, product)
    _check_limits(request, product)
    if request.end_time is not None and not _in_future(request.end_time, now):
        raise OrderRejected("PREVIEW_INVALID_END_TIME", "end_time must be a UTC time after now")
    return product


def _market_problem(request: OrderRequest) -> str:
    if (request.base_size is None) == (request.quote_size is None):
        return "a market order takes exactly one of base_size and quote_size"
    if request.quote_size is not None and request.side is Side.SELL:
        return "a market sell is sized in base_size"
    if request.limit_price is not None or request.end_time is not None:
        return "a market order takes no limit_price and no end_time"
    if request.post_only:
        return "post_only is only for limit orders"
    return ""


def _limit_problem(request: OrderRequest) -> str:
    if request.base_size is None or request.limit_price is None:
        return "a limit order needs base_size and limit_price"
    if request.quote_size is not None:
        return "a limit order is sized in base_size, not quote_size"
    if (request.kind is OrderKind.LIMIT_GTD) != (request.end_time is not None):
        return "end_time is required for a GTD order and only for one"
    return ""


def _check_positive(request: OrderRequest) -> None:
    for value, reason, name in (
        (request.base_size, BASE_TOO_SMALL, "base_size"),
        (request.quote_size, QUOTE_TOO_SMALL, "quote_size"),
        (request.limit_price, "INVALID_LIMIT_PRICE", "limit_price"),
    ):
        if value is not None and not (value.is_finite() and value > 0):
            raise OrderRejected(reason, f"{name} must be a positive number, got {value}")


def _check_precision(request: OrderRequest, product: ProductRules) -> None:
    for value, increment, reason, name in (
        (request.base_size, product.base_increment, "INVALID_SIZE_PRECISION", "base_size"),
        (request.quote_size, product.quote_increment, "INVALID_SIZE_PRECISION", "quote_size"),
        (request.limit_price, product.price_increment, "INVALID_PRICE_PRECISION", "limit_price"),
    ):
        if value is not None and quantize(value, increment, Rounding.FLOOR) != value:
            raise OrderRejected(reason, f"{name} {value} is not a multiple of {increment}")


def _check_limits(request: OrderRequest, product: ProductRules) -> None:
    base, quote, price = request.base_size, request.quote_size, request.limit_price
    if base is not None:
        bounds = (product.base_min_size, product.base_max_size)
        _check_range(base, bounds, "base_size", (BASE_TOO_SMALL, BASE_TOO_LARGE))
    if quote is not None:
        bounds = (product.quote_min_size, product.quote_max_size)
        _check_range(quote, bounds, "quote_size", (QUOTE_TOO_SMALL, QUOTE_TOO_LARGE))
    if base is not None and price is not None and base * price < product.quote_min_size:
        raise OrderRejected(
            QUOTE_TOO_SMALL, f"notional {base * price} is below {product.quote_min_size}"
        )


def _check_range(
    value: Decimal, bounds: tuple[Decimal, Decimal], name: str, reasons: tuple[str, str]
) -> None:
    low, high = bounds
    if value < low:
        raise OrderRejected(reasons[0], f"{name} {value} is below the minimum {low}")
    if value > high:
        raise OrderRejected(reasons[1], f"{name} {value} is above the maximum {high}")


def _in_future(end_time: datetime, now: datetime) -> bool:
    return end_time.utcoffset() is not None and end_time > now
