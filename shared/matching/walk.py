"""Walking one side of a book: how much of each level an order takes.

The walk is pure arithmetic over ``(price, size)`` levels, so the exchange simulator, the
paper venue and the backtest all fill market and crossing limit orders the same way.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from decimal import Decimal
from itertools import takewhile

from shared.money import Rounding, Side, quantize

__all__ = ["beyond_limit", "walk_book"]

_ZERO = Decimal(0)
# Enough digits that sums and products of prices and sizes never round.
_PRECISION = 80


def walk_book(
    levels: Sequence[tuple[Decimal, Decimal]],
    *,
    base_size: Decimal | None = None,
    quote_budget: Decimal | None = None,
    fee_rate: Decimal = _ZERO,
    base_increment: Decimal,
    limit_price: Decimal | None = None,
    side: Side | None = None,
) -> list[tuple[Decimal, Decimal]]:
    """The ``(price, size)`` executions of an order taking ``levels`` (best first).

    Give exactly one of ``base_size`` (fill up to that much base) or ``quote_budget``
    (spend so that ``sum(price * size) * (1 + fee_rate) <= quote_budget``, as a Coinbase
    market buy by quote size does). Sizes are whole multiples of ``base_increment``,
    rounded down; no execution is larger than its level. ``limit_price`` stops the walk
    at the first level worse than it, which needs the taking order's ``side``.
    """
    if (base_size is None) == (quote_budget is None):
        raise ValueError("walk_book takes exactly one of base_size and quote_budget")
    if limit_price is not None and side is None:
        raise ValueError("a limit_price needs the side of the order it bounds")
    if fee_rate < 0 or base_increment <= 0:
        raise ValueError("fee_rate must be >= 0 and base_increment > 0")
    executions: list[tuple[Decimal, Decimal]] = []
    taken = spent = _ZERO
    with decimal.localcontext(prec=_PRECISION):
        for price, size in _within_limit(levels, limit_price, side):
            if base_size is not None:
                room = base_size - taken
            else:  # quote_budget is set: checked above
                room = _affordable(price, quote_budget or _ZERO, fee_rate, spent, base_increment)
            wanted = min(size, room)
            fill = quantize(wanted, base_increment, Rounding.FLOOR) if wanted > 0 else _ZERO
            if fill > 0:
                executions.append((price, fill))
                taken += fill
                spent += price * fill
            if wanted < size:  # the order, not the level, was the limit: nothing more to take
                break
    return executions


def beyond_limit(price: Decimal, limit_price: Decimal, side: Side) -> bool:
    """Whether a level at ``price`` is worse than an order on ``side`` at ``limit_price`` takes."""
    return price > limit_price if side is Side.BUY else price < limit_price


def _within_limit(
    levels: Iterable[tuple[Decimal, Decimal]], limit_price: Decimal | None, side: Side | None
) -> Iterable[tuple[Decimal, Decimal]]:
    if limit_price is None or side is None:
        return levels
    return takewhile(lambda level: not beyond_limit(level[0], limit_price, side), levels)


def _affordable(
    price: Decimal, budget: Decimal, fee_rate: Decimal, spent: Decimal, increment: Decimal
) -> Decimal:
    """The most base, in whole increments, that ``budget`` still pays for at ``price``."""
    estimate = (budget / (1 + fee_rate) - spent) / price
    if estimate < increment:
        return _ZERO
    # The division rounds; step from one increment above down to the exact answer.
    size = quantize(estimate, increment, Rounding.FLOOR) + increment
    while size > 0 and (spent + price * size) * (1 + fee_rate) > budget:
        size -= increment
    return size
