"""Measuring slippage: recorded fills become orders the cost model can price.

The model prices a whole taker order of notional ``q`` (its average price against the
mid it arrived at), while a venue reports one fill per level the order walked. So the
fills of one order and one liquidity are combined, size-weighted, into an
:class:`Execution`, and that is what is measured, bucketed and fitted. Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from shared.messages import Liquidity
from shared.money import Side
from shared.slippage import CostModel

__all__ = [
    "BUCKET_EDGES",
    "BPS",
    "Execution",
    "FillRecord",
    "SlippageRow",
    "combine_fills",
    "mean",
    "size_bucket",
    "slippage_bps",
    "summarize",
]

BPS = Decimal(10_000)
ZERO = Decimal(0)
# Order notional as a multiple of the tier's typical order, half a decade per bucket:
# the model's impact term grows with its square root, so these spread it evenly.
_EDGES = ("0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1", "3", "10", "30")
BUCKET_EDGES = tuple(Decimal(edge) for edge in _EDGES)


@dataclass(frozen=True)
class FillRecord:
    """One row of ``fills``: what a venue reported."""

    client_order_id: str
    product_id: str
    side: Side
    liquidity: Liquidity
    price: Decimal
    size: Decimal
    fee: Decimal
    arrival_mid: Decimal
    filled_at: datetime


@dataclass(frozen=True)
class Execution:
    """One order's fills of one liquidity, combined: the unit the cost model prices."""

    client_order_id: str
    product_id: str
    tier: int
    side: Side
    liquidity: Liquidity
    arrival_mid: Decimal
    size: Decimal
    average_price: Decimal
    fee: Decimal
    filled_at: datetime  # its first fill
    fills: int

    @property
    def notional(self) -> Decimal:
        """Size at the arrival mid: the ``q`` of the model, free of the slippage itself."""
        return self.size * self.arrival_mid

    @property
    def slippage_bps(self) -> Decimal:
        return slippage_bps(self.side, self.average_price, self.arrival_mid)


@dataclass(frozen=True)
class SlippageRow:
    """Observed (and, for takers, modeled) mean slippage of one group of executions."""

    tier: int
    liquidity: Liquidity
    bucket: str  # "all" when not split by size
    count: int
    observed_bps: Decimal
    modeled_bps: Decimal | None  # None for makers: the model is the taker cost


def slippage_bps(side: Side, price: Decimal, mid: Decimal) -> Decimal:
    """Cost against ``mid`` in bps, positive when worse for us (a buy above, a sell below)."""
    worse = price - mid if side is Side.BUY else mid - price
    return worse / mid * BPS


def combine_fills(
    fills: Iterable[FillRecord], tiers: Mapping[str, int]
) -> tuple[list[Execution], set[str]]:
    """Executions ordered by first fill, and the products no tier is configured for."""
    groups: dict[tuple[str, Liquidity, Decimal], list[FillRecord]] = defaultdict(list)
    unknown: set[str] = set()
    for fill in fills:
        if fill.product_id not in tiers:
            unknown.add(fill.product_id)
            continue
        groups[(fill.client_order_id, fill.liquidity, fill.arrival_mid)].append(fill)
    executions = [_execution(group, tiers[group[0].product_id]) for group in groups.values()]
    executions.sort(key=lambda e: (e.filled_at, e.client_order_id, e.liquidity.value))
    return executions, unknown


def _execution(fills: Sequence[FillRecord], tier: int) -> Execution:
    first = min(fills, key=lambda fill: fill.filled_at)
    size = sum((fill.size for fill in fills), ZERO)
    value = sum((fill.price * fill.size for fill in fills), ZERO)
    return Execution(
        client_order_id=first.client_order_id, product_id=first.product_id, tier=tier,
        side=first.side, liquidity=first.liquidity, arrival_mid=first.arrival_mid, size=size,
        average_price=value / size, fee=sum((fill.fee for fill in fills), ZERO),
        filled_at=first.filled_at, fills=len(fills),
    )  # fmt: skip


def size_bucket(notional: Decimal, typical_notional: Decimal) -> str:
    """The half-decade of ``notional / typical_notional`` it falls in, e.g. ``0.1-0.3x``."""
    ratio = notional / typical_notional
    if ratio < BUCKET_EDGES[0]:
        return f"<{BUCKET_EDGES[0]}x"
    for low, high in zip(BUCKET_EDGES, BUCKET_EDGES[1:], strict=False):
        if ratio < high:
            return f"{low}-{high}x"
    return f">={BUCKET_EDGES[-1]}x"


def mean(values: Sequence[Decimal]) -> Decimal:
    if not values:
        raise ValueError("the mean of nothing")
    return sum(values, ZERO) / len(values)


def summarize(
    executions: Iterable[Execution], model: CostModel, *, by_size: bool
) -> list[SlippageRow]:
    """Mean observed and modeled slippage per tier and liquidity (and size bucket)."""
    groups: dict[tuple[int, Liquidity, str], list[Execution]] = defaultdict(list)
    for execution in executions:
        typical = model.tier(execution.tier).typical_notional
        bucket = size_bucket(execution.notional, typical) if by_size else "all"
        groups[(execution.tier, execution.liquidity, bucket)].append(execution)
    rows = []
    for (tier, liquidity, bucket), group in groups.items():
        modeled = None
        if liquidity is Liquidity.TAKER:
            modeled = mean([model.slippage_bps(tier, e.notional) for e in group])
        observed = mean([e.slippage_bps for e in group])
        rows.append(SlippageRow(tier, liquidity, bucket, len(group), observed, modeled))
    return sorted(rows, key=lambda row: (row.tier, row.liquidity.value, _bucket_order(row)))


def _bucket_order(row: SlippageRow) -> Decimal:
    """Buckets by size: ``<0.001x`` first, ``>=30x`` last."""
    if row.bucket == "all":
        return ZERO
    if row.bucket.startswith("<"):
        return Decimal(-1)
    return Decimal(row.bucket.lstrip(">=").split("-")[0].rstrip("x"))
