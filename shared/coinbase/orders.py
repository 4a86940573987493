"""Coinbase's order JSON, built from an :class:`OrderRequest`.

Decimals travel as plain strings (``format(d, "f")``: never exponent form, which
Coinbase rejects); GTD end times as RFC 3339 in UTC.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.clock import ensure_utc
from shared.matching.types import OrderKind, OrderRequest

__all__ = ["order_body", "plain"]


def plain(value: Decimal) -> str:
    """``Decimal("1E-7")`` as ``"0.0000001"``: Coinbase wants fixed-point text."""
    return format(value, "f")


def order_body(request: OrderRequest) -> dict[str, Any]:
    """The ``POST /orders`` body for one order."""
    return {
        "client_order_id": request.client_order_id,
        "product_id": request.product_id,
        "side": request.side.value,
        "order_configuration": {request.kind.value: _configuration(request)},
    }


def _configuration(request: OrderRequest) -> dict[str, Any]:
    if request.kind is OrderKind.MARKET_IOC:
        if (request.base_size is None) == (request.quote_size is None):
            raise ValueError("a market order needs exactly one of base_size and quote_size")
        if request.quote_size is not None:
            return {"quote_size": plain(request.quote_size)}
        assert request.base_size is not None
        return {"base_size": plain(request.base_size)}
    if request.base_size is None or request.limit_price is None:
        raise ValueError("a limit order needs base_size and limit_price")
    config: dict[str, Any] = {
        "base_size": plain(request.base_size),
        "limit_price": plain(request.limit_price),
        "post_only": request.post_only,
    }
    if request.kind is OrderKind.LIMIT_GTD:
        if request.end_time is None:
            raise ValueError("a GTD order needs end_time")
        config["end_time"] = ensure_utc(request.end_time).isoformat().replace("+00:00", "Z")
    return config
