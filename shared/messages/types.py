"""Field types shared by every message: exact decimals, bounded ids and UTC timestamps."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from shared.clock import ensure_utc
from shared.money import to_decimal

__all__ = ["Dec", "Name", "ProductId", "UtcDatetime"]

# No price, size, fee or notional comes near these bounds. A number beyond them is not a
# market's: it would overflow decimal arithmetic, a float indicator or a database column.
MAX_INTEGER_DIGITS = 30
MAX_FRACTION_DIGITS = 60


def _parse_decimal(value: Any) -> Decimal:
    # Strings on the wire; floats are refused so no producer can lose precision silently.
    result = to_decimal(value)
    exponent = result.as_tuple().exponent
    if result.adjusted() >= MAX_INTEGER_DIGITS or (
        isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS
    ):
        raise ValueError(
            f"out of range: more than {MAX_INTEGER_DIGITS} digits before the point or "
            f"{MAX_FRACTION_DIGITS} after it"
        )
    return result


Dec = Annotated[
    Decimal,
    BeforeValidator(_parse_decimal),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
]
"""A Decimal that travels as a string and round-trips exactly (``"0.00010"`` stays so)."""

ProductId = Annotated[str, Field(max_length=32)]
"""A product id such as ``BTC-USD``, no longer than the columns that store it."""

Name = Annotated[str, Field(max_length=100)]
"""An id others refer to (a proposal, an intent): it fits the columns that store it, and
the ids of the envelopes derived from it (``exec:finished:<intent id>``) fit theirs."""


def _refuse_numbers(value: Any) -> Any:
    # pydantic would read 1700000000 as seconds (and larger numbers as milliseconds).
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("timestamps travel as ISO 8601 text with a timezone, not numbers")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_refuse_numbers), AfterValidator(ensure_utc)]
"""A timezone-aware datetime, normalised to UTC; naive values are rejected."""
