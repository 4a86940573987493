"""Field types shared by every message: exact decimals and UTC timestamps."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

from shared.clock import ensure_utc
from shared.money import to_decimal

__all__ = ["Dec", "UtcDatetime"]


def _parse_decimal(value: Any) -> Decimal:
    # Strings on the wire; floats are refused so no producer can lose precision silently.
    return to_decimal(value)


Dec = Annotated[
    Decimal,
    BeforeValidator(_parse_decimal),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
]
"""A Decimal that travels as a string and round-trips exactly (``"0.00010"`` stays so)."""


def _refuse_numbers(value: Any) -> Any:
    # pydantic would read 1700000000 as seconds (and larger numbers as milliseconds).
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("timestamps travel as ISO 8601 text with a timezone, not numbers")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_refuse_numbers), AfterValidator(ensure_utc)]
"""A timezone-aware datetime, normalised to UTC; naive values are rejected."""
