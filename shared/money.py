"""Decimal money: strict parsing and quantizing to a product's increments.

Prices, sizes, fees and PnL are ``Decimal``. A float never becomes money: binary
floating point cannot represent 0.1 and silently loses cents.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from enum import Enum, StrEnum
from typing import NewType

__all__ = [
    "ClientOrderId",
    "MoneyError",
    "ProductId",
    "Rounding",
    "Side",
    "quantize",
    "to_decimal",
]

ProductId = NewType("ProductId", str)
ClientOrderId = NewType("ClientOrderId", str)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class MoneyError(ValueError):
    """A value that cannot be money: a float, NaN, infinity, or unparseable text."""


class Rounding(Enum):
    """Direction of rounding; always stated at the call site, never implied.

    FLOOR and CEILING are directional (toward -inf / +inf), which is what order code
    means: a buy's size rounds down so it never spends more than allowed.
    """

    FLOOR = decimal.ROUND_FLOOR
    CEILING = decimal.ROUND_CEILING
    HALF_EVEN = decimal.ROUND_HALF_EVEN


def to_decimal(value: object) -> Decimal:
    """Parse ``value`` (str, int or Decimal) into a finite Decimal; floats are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"refusing {type(value).__name__} {value!r} as money; pass a string")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise MoneyError(f"not a decimal number: {value!r}") from None
    else:
        raise MoneyError(f"refusing {type(value).__name__} as money")
    if not result.is_finite():
        raise MoneyError(f"money must be finite, got {value!r}")
    return result


def quantize(value: Decimal, increment: Decimal, rounding: Rounding) -> Decimal:
    """Round ``value`` to a whole multiple of ``increment`` in the given direction.

    The result carries the increment's exponent, so ``quantize(Decimal("1.5"),
    Decimal("0.01"), ...)`` is ``Decimal("1.50")``. Increments that are not powers of
    ten (e.g. ``0.25``) are honoured too.
    """
    if not value.is_finite():
        raise MoneyError(f"cannot quantize {value!r}")
    if not increment.is_finite() or increment <= 0:
        raise MoneyError(f"increment must be a positive number, got {increment!r}")
    # A wide local context so large notionals with fine increments stay exact.
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        steps = (value / increment).to_integral_value(rounding=rounding.value)
        return (steps * increment).quantize(increment)
