"""Coinbase-style answers and request-field parsing shared by exchange-sim's routes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from fastapi import Response

__all__ = ["bad_request", "json_response", "not_found", "parse_decimal", "parse_time"]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def bad_request(message: str, error: str = "INVALID_ARGUMENT") -> Response:
    return json_response({"error": error, "error_details": message, "message": message}, 400)


def not_found(what: str) -> Response:
    return json_response({"error": "NOT_FOUND", "message": f"{what} not found"}, 404)


def parse_decimal(value: Any, name: str) -> Decimal:
    """A Coinbase amount field: a decimal in a string."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite")
    return number


def parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an RFC 3339 time")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{name} needs a timezone")
    return moment
