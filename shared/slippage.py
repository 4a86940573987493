"""The cost model: what a taker fill pays against the mid, and the fee on top.

A fill of notional ``q`` (size times mid, in quote currency) in liquidity tier ``t`` is
modeled as::

    slippage_bps(t, q) = base_slippage_bps[t]
                         + impact_coefficient_bps[t] * sqrt(q / typical_notional[t])
    fill price         = mid * (1 + slippage_bps / 10_000)   for a buy  (rounded up to the tick)
                       = mid * (1 - slippage_bps / 10_000)   for a sell (rounded down)
    fee                = fill price * size * fee_rate        (maker or taker rate, to the cent)

The base is what any order pays in that tier (half the spread and the touch's churn);
the impact grows with the square root of the order's size relative to the tier's
typical order, the shape market-impact studies keep finding. ``impact_coefficient_bps``
is the extra cost of an order exactly ``typical_notional`` in size.

The same model shapes the book the backtest's matching engine walks (:meth:`CostModel.book`),
so a backtest fill and this formula agree; the parameters come from config
(``universe.yaml`` tiers, ``policy.yaml`` fees) or from the latest calibration against
recorded fills (:mod:`services.calibrate`). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared.config.models import ExecutionPolicy, UniverseConfig
from shared.messages import Liquidity
from shared.money import Rounding, Side, quantize, to_decimal

__all__ = [
    "DEFAULT_FEES_BPS",
    "DEFAULT_TIERS",
    "BookLevel",
    "CostModel",
    "RoundTrip",
    "TierCosts",
    "break_even_win_rate",
    "load_calibration",
]

BPS = Decimal(10_000)
ZERO = Decimal(0)
CENT = Decimal("0.01")
# Notional boundaries of the model's book, in typical orders: 0.001 to 100, half a decade apart.
_BOOK_STEPS = tuple(Decimal(10) ** (Decimal(i) / 2) for i in range(-6, 5))
_DEEP = Decimal(10) ** 12  # a level no backtest order can exhaust


@dataclass(frozen=True)
class TierCosts:
    """The model's parameters for one liquidity tier."""

    base_slippage_bps: Decimal
    impact_coefficient_bps: Decimal
    typical_notional: Decimal

    def __post_init__(self) -> None:
        if self.base_slippage_bps < 0 or self.impact_coefficient_bps < 0:
            raise ValueError("slippage parameters cannot be negative")
        if self.typical_notional <= 0:
            raise ValueError("typical_notional must be positive")

    def slippage_bps(self, notional: Decimal) -> Decimal:
        if notional < 0:
            raise ValueError(f"notional cannot be negative, got {notional}")
        impact = self.impact_coefficient_bps * (notional / self.typical_notional).sqrt()
        return self.base_slippage_bps + impact


DEFAULT_TIERS: Mapping[int, TierCosts] = {
    1: TierCosts(Decimal(10), Decimal(5), Decimal(50_000)),
    2: TierCosts(Decimal(25), Decimal(10), Decimal(10_000)),
    3: TierCosts(Decimal(50), Decimal(20), Decimal(2_000)),
}
DEFAULT_FEES_BPS = (Decimal(40), Decimal(60))  # maker, taker: unless configured


@dataclass(frozen=True)
class BookLevel:
    price: Decimal
    size: Decimal


@dataclass(frozen=True)
class RoundTrip:
    """One buy and its sell, both taker, with what each cost."""

    entry_price: Decimal
    exit_price: Decimal
    entry_fee: Decimal
    exit_fee: Decimal
    gross_pnl: Decimal  # at the mids: what the market moved
    net_pnl: Decimal  # at the fill prices, less both fees

    @property
    def costs(self) -> Decimal:
        return self.gross_pnl - self.net_pnl


@dataclass(frozen=True)
class CostModel:
    """Slippage per tier and maker/taker fees; ``source`` says where the numbers came from."""

    tiers: Mapping[int, TierCosts] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    maker_fee_bps: Decimal = DEFAULT_FEES_BPS[0]
    taker_fee_bps: Decimal = DEFAULT_FEES_BPS[1]
    slippage: bool = True
    source: str = "defaults"

    def __post_init__(self) -> None:
        if not ZERO <= self.maker_fee_bps <= self.taker_fee_bps:
            raise ValueError("fees must satisfy 0 <= maker <= taker")

    # --- building ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        universe: UniverseConfig,
        execution: ExecutionPolicy,
        calibration: Mapping[int, TierCosts] | None = None,
    ) -> CostModel:
        """Tiers from ``universe.yaml`` (or a calibration), fees from ``policy.yaml``."""
        tiers = {}
        for tier, configured in universe.tiers.items():
            default = DEFAULT_TIERS.get(int(tier), DEFAULT_TIERS[3])
            tiers[int(tier)] = TierCosts(
                configured.base_slippage_bps,
                _or(configured.impact_coefficient_bps, default.impact_coefficient_bps),
                _or(configured.typical_notional_usd, default.typical_notional),
            )
        source = "config"
        if calibration:
            tiers.update(calibration)
            source = "calibration"
        return cls(tiers, execution.maker_fee_bps, execution.taker_fee_bps, source=source)

    def without_slippage(self) -> CostModel:
        return replace(self, slippage=False)

    def without_fees(self) -> CostModel:
        return replace(self, maker_fee_bps=ZERO, taker_fee_bps=ZERO)

    # --- pricing ----------------------------------------------------------------------

    def tier(self, tier: int) -> TierCosts:
        try:
            return self.tiers[int(tier)]
        except KeyError:
            raise ValueError(f"no slippage parameters for tier {tier}") from None

    def slippage_bps(self, tier: int, notional: Decimal) -> Decimal:
        """Modeled cost against the mid, in bps, of a taker order of ``notional``."""
        return self.tier(tier).slippage_bps(notional) if self.slippage else ZERO

    def fill_price(
        self, mid: Decimal, side: Side, tier: int, size: Decimal, price_increment: Decimal
    ) -> Decimal:
        """Average taker price of ``size`` at ``mid``, on the tick grid, rounded against us."""
        slip = self.slippage_bps(tier, size * mid) / BPS
        if side is Side.BUY:
            return quantize(mid * (1 + slip), price_increment, Rounding.CEILING)
        return quantize(mid * (1 - slip), price_increment, Rounding.FLOOR)

    def fee(
        self, notional: Decimal, liquidity: Liquidity, quote_increment: Decimal = CENT
    ) -> Decimal:
        """The fee on a fill worth ``notional``, rounded as the matching engine rounds it."""
        rate = self.maker_fee_bps if liquidity is Liquidity.MAKER else self.taker_fee_bps
        return quantize(notional * rate / BPS, quote_increment, Rounding.HALF_EVEN)

    def fee_rates(self) -> tuple[Decimal, Decimal]:
        """Maker and taker as fractions of notional, for the matching engine."""
        return self.maker_fee_bps / BPS, self.taker_fee_bps / BPS

    def round_trip(
        self, size: Decimal, entry_mid: Decimal, exit_mid: Decimal, tier: int,
        price_increment: Decimal = CENT, quote_increment: Decimal = CENT,
    ) -> RoundTrip:  # fmt: skip
        """Buy ``size`` at ``entry_mid`` and sell it at ``exit_mid``, both as taker."""
        entry = self.fill_price(entry_mid, Side.BUY, tier, size, price_increment)
        exit_ = self.fill_price(exit_mid, Side.SELL, tier, size, price_increment)
        entry_fee = self.fee(entry * size, Liquidity.TAKER, quote_increment)
        exit_fee = self.fee(exit_ * size, Liquidity.TAKER, quote_increment)
        return RoundTrip(
            entry_price=entry, exit_price=exit_, entry_fee=entry_fee, exit_fee=exit_fee,
            gross_pnl=(exit_mid - entry_mid) * size,
            net_pnl=(exit_ - entry) * size - entry_fee - exit_fee,
        )  # fmt: skip

    # --- the book the matching engine walks -------------------------------------------

    def book(
        self, mid: Decimal, tier: int, price_increment: Decimal, base_increment: Decimal
    ) -> tuple[list[BookLevel], list[BookLevel]]:
        """Bids and asks around ``mid`` whose walk costs what the model says.

        Level ``k`` holds the notional between two boundaries ``N[k-1]`` and ``N[k]``
        (``typical_notional`` times 0.001 ... 100) at the price whose slice costs
        ``C(N[k]) - C(N[k-1])``, where ``C(q) = q * slippage_bps(q)``. An order that ends
        on a boundary pays the model's price exactly; between boundaries, the cost is
        interpolated. Without slippage the book is locked at the mid and bottomless.
        """
        if not self.slippage:
            deep = BookLevel(mid, _DEEP)
            return [deep], [deep]
        bids: list[BookLevel] = []
        asks: list[BookLevel] = []
        for slice_bps, slice_notional in self.book_shape(tier):
            size = max(
                quantize(slice_notional / mid, base_increment, Rounding.FLOOR), base_increment
            )
            offset = mid * slice_bps / BPS
            asks.append(BookLevel(quantize(mid + offset, price_increment, Rounding.CEILING), size))
            bid = quantize(mid - offset, price_increment, Rounding.FLOOR)
            if bid > 0:
                bids.append(BookLevel(bid, size))
        return _merge_levels(bids), _merge_levels(asks)

    def book_shape(self, tier: int) -> list[tuple[Decimal, Decimal]]:
        """The book's levels independent of the mid: (bps from the mid, notional) each."""
        costs = self.tier(tier)
        shape = []
        previous_notional, previous_cost = ZERO, ZERO
        for step in _BOOK_STEPS:
            notional = costs.typical_notional * step
            cost = notional * costs.slippage_bps(notional)
            slice_bps = (cost - previous_cost) / (notional - previous_notional)
            shape.append((slice_bps, notional - previous_notional))
            previous_notional, previous_cost = notional, cost
        return shape


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _merge_levels(levels: list[BookLevel]) -> list[BookLevel]:
    """Levels that rounded onto the same tick become one."""
    merged: list[BookLevel] = []
    for level in levels:
        if merged and merged[-1].price == level.price:
            merged[-1] = BookLevel(level.price, merged[-1].size + level.size)
        else:
            merged.append(level)
    return merged


def break_even_win_rate(net_win: Decimal, net_loss: Decimal) -> Decimal:
    """The share of trades that must win for ``net_win`` and ``net_loss`` to break even.

    ``p * net_win + (1 - p) * net_loss = 0``, so ``p = -net_loss / (net_win - net_loss)``.
    """
    if net_win <= 0 or net_loss >= 0:
        raise ValueError("needs a winning trade that nets a gain and a losing one that nets a loss")
    return -net_loss / (net_win - net_loss)


def load_calibration(path: Path) -> dict[int, TierCosts]:
    """Tier parameters exported by ``python -m services.calibrate`` (JSON)."""
    try:
        raw: Any = json.loads(path.read_text())
        return {
            int(tier): TierCosts(
                to_decimal(values["base_slippage_bps"]),
                to_decimal(values["impact_coefficient_bps"]),
                to_decimal(values["typical_notional_usd"]),
            )
            for tier, values in raw["tiers"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a slippage calibration: {exc}") from exc
