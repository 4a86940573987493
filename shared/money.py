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
    ten (e.g. ``0.25``) are honoured too. The arithmetic is exact: the precision is
    raised to fit the operands, so no intermediate rounding can change the direction.
    """
    if not isinstance(value, Decimal) or not isinstance(increment, Decimal):
        raise MoneyError("quantize takes Decimal value and increment")
    if not value.is_finite():
        raise MoneyError(f"cannot quantize {value!r}")
    if not increment.is_finite() or increment <= 0:
        raise MoneyError(f"increment must be a positive number, got {increment!r}")
    increment_tuple = increment.as_tuple()
    if increment_tuple.digits == (1,):  # a power of ten: Decimal.quantize is exact
        try:
            with decimal.localcontext() as ctx:
                ctx.prec = max(28, value.adjusted() - int(increment_tuple.exponent) + 2)
                return value.quantize(increment, rounding=rounding.value)
        except decimal.InvalidOperation:
            pass  # too many digits for the context: the general path below
    increment_exponent = int(increment_tuple.exponent)
    digits = max(value.adjusted(), 0) - min(increment_exponent, 0) + 2
    digits += len(increment.as_tuple().digits) + len(value.as_tuple().digits)
    with decimal.localcontext() as ctx:
        ctx.prec = max(28, digits)
        ctx.traps[decimal.Inexact] = True  # exactness is the point; fail loudly otherwise
        steps = value // increment  # truncated toward zero
        remainder = value - steps * increment  # exact, same sign as value
        steps += _step_adjustment(remainder, increment, steps, rounding)
        return (steps * increment).quantize(increment)


def _step_adjustment(
    remainder: Decimal, increment: Decimal, steps: Decimal, rounding: Rounding
) -> int:
    if remainder == 0:
        return 0
    if rounding is Rounding.FLOOR:
        return -1 if remainder < 0 else 0
    if rounding is Rounding.CEILING:
        return 1 if remainder > 0 else 0
    away = 1 if remainder > 0 else -1
    twice = abs(remainder) * 2
    if twice > increment or (twice == increment and steps % 2 != 0):
        return away
    return 0
