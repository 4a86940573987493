"""Fitting the cost model to measured taker executions, per tier, robustly.

The model ``slippage_bps = base + impact * sqrt(notional / typical_notional)`` is linear
in its two parameters, so it is fitted by least squares on ``[1, sqrt(q / typical)]``,
Huber-weighted by iteratively reweighted least squares: a few orders caught in a fast
market (or a bad arrival mid) get bounded weight instead of dragging the fit. Every 5th
order of a tier, by time, is held out, and both the configured and the fitted
parameters are scored on those, so a fit shows what it gains. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from services.calibrate.measure import Execution, mean, size_bucket
from shared.messages import Liquidity
from shared.slippage import CostModel, TierCosts

__all__ = [
    "HOLD_OUT_EVERY",
    "MIN_SIZE_BUCKETS",
    "MIN_TAKER_ORDERS",
    "FitOutcome",
    "Skipped",
    "TierFit",
    "calibrate",
    "fit_tier",
    "huber_fit",
    "mean_absolute_error",
    "split_held_out",
]

MIN_TAKER_ORDERS = 30
MIN_SIZE_BUCKETS = 2  # one size alone cannot tell the base from the impact
HOLD_OUT_EVERY = 5
HUBER_K = 1.345  # 95% efficiency when the noise is normal
_PLACES = Decimal("0.0001")  # bps; far below what the data can resolve
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TierFit:
    """A tier's fitted parameters, and both models' error on its held-out orders."""

    tier: int
    costs: TierCosts
    sample_size: int  # taker orders fitted on
    held_out: int
    config_error_bps: Decimal
    fit_error_bps: Decimal


@dataclass(frozen=True)
class Skipped:
    tier: int
    reason: str


@dataclass(frozen=True)
class FitOutcome:
    fits: list[TierFit]
    skipped: list[Skipped]


def calibrate(executions: Sequence[Execution], model: CostModel) -> FitOutcome:
    """Fit every tier of ``model`` on its taker executions; makers are never fitted."""
    fits: list[TierFit] = []
    skipped: list[Skipped] = []
    for tier in sorted(model.tiers):
        takers = [e for e in executions if e.tier == tier and e.liquidity is Liquidity.TAKER]
        result = fit_tier(tier, takers, model.tier(tier))
        if isinstance(result, TierFit):
            fits.append(result)
        else:
            skipped.append(result)
    return FitOutcome(fits, skipped)


def fit_tier(tier: int, takers: Sequence[Execution], configured: TierCosts) -> TierFit | Skipped:
    """The tier's fit on its training orders, or why there is none."""
    refusal = _refusal(takers, configured.typical_notional)
    if refusal:
        return Skipped(tier, f"tier {tier}: {refusal}; not fitted, config stays in force")
    training, held_out = split_held_out(takers)
    typical = configured.typical_notional
    base, impact = huber_fit(_impact_scale(training, typical), _observed(training))
    costs = TierCosts(_bps(base), _bps(impact), typical)
    return TierFit(
        tier=tier, costs=costs, sample_size=len(training), held_out=len(held_out),
        config_error_bps=mean_absolute_error(configured, held_out),
        fit_error_bps=mean_absolute_error(costs, held_out),
    )  # fmt: skip


def _refusal(takers: Sequence[Execution], typical: Decimal) -> str | None:
    if len(takers) < MIN_TAKER_ORDERS:
        return (
            f"{len(takers)} taker orders, at least {MIN_TAKER_ORDERS} needed "
            f"(every {HOLD_OUT_EVERY}th is held out to test the fit)"
        )
    buckets = sorted({size_bucket(e.notional, typical) for e in takers})
    if len(buckets) < MIN_SIZE_BUCKETS:
        return (
            f"every taker order is in one size bucket ({buckets[0]} of {typical} typical), "
            f"at least {MIN_SIZE_BUCKETS} needed to tell the base from the impact"
        )
    return None


def split_held_out(
    executions: Sequence[Execution],
) -> tuple[list[Execution], list[Execution]]:
    """Training and held-out orders: every 5th by time is held out, deterministically."""
    ordered = sorted(executions, key=lambda e: (e.filled_at, e.client_order_id))
    training = [e for i, e in enumerate(ordered) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    held_out = [e for i, e in enumerate(ordered) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    return training, held_out


def mean_absolute_error(costs: TierCosts, executions: Sequence[Execution]) -> Decimal:
    """Mean |modeled - observed| in bps over ``executions``."""
    errors = [abs(costs.slippage_bps(e.notional) - e.slippage_bps) for e in executions]
    return mean(errors).quantize(_PLACES)


def _impact_scale(executions: Sequence[Execution], typical: Decimal) -> Floats:
    return np.array([float((e.notional / typical).sqrt()) for e in executions])


def _observed(executions: Sequence[Execution]) -> Floats:
    return np.array([float(e.slippage_bps) for e in executions])


def _bps(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_PLACES)


# --- the robust regression ------------------------------------------------------------


def huber_fit(scale: Floats, observed: Floats) -> tuple[float, float]:
    """``(base, impact)``: the Huber fit of ``observed = base + impact * scale``.

    Both parameters are costs and cannot be negative (``TierCosts`` refuses them): when
    the free fit has one below zero, the Huber fits with one of them held at zero are
    tried instead, and the one with the least absolute residual wins.
    """
    ones = np.ones_like(scale)
    free = _irls(np.column_stack([ones, scale]), observed)
    if free[0] >= 0 and free[1] >= 0:
        return float(free[0]), float(free[1])
    candidates = [(0.0, 0.0)]
    base_only = _irls(ones[:, None], observed)[0]
    impact_only = _irls(scale[:, None], observed)[0]
    if base_only >= 0:
        candidates.append((float(base_only), 0.0))
    if impact_only >= 0:
        candidates.append((0.0, float(impact_only)))
    return min(candidates, key=lambda c: _absolute_loss(c, scale, observed))


def _absolute_loss(params: tuple[float, float], scale: Floats, observed: Floats) -> float:
    return float(np.abs(observed - params[0] - params[1] * scale).sum())


def _irls(design: Floats, observed: Floats, iterations: int = 100) -> Floats:
    """Huber regression by iteratively reweighted least squares, from the OLS start."""
    params = _weighted_lstsq(design, observed, np.ones(len(observed)))
    for _ in range(iterations):
        residuals = observed - design @ params
        sigma = _robust_sigma(residuals)
        if sigma <= 1e-12:  # an exact fit: nothing left to reweight
            break
        distance = np.abs(residuals) / (HUBER_K * sigma)
        weights = np.where(distance <= 1.0, 1.0, 1.0 / np.maximum(distance, 1.0))
        updated = _weighted_lstsq(design, observed, weights)
        converged = bool(np.max(np.abs(updated - params)) < 1e-9)
        params = updated
        if converged:
            break
    return params


def _robust_sigma(residuals: Floats) -> float:
    """The noise's standard deviation from the median absolute deviation, blind to outliers."""
    deviation = np.abs(residuals - np.median(residuals))
    return float(1.4826 * np.median(deviation))


def _weighted_lstsq(design: Floats, observed: Floats, weights: Floats) -> Floats:
    root = np.sqrt(weights)
    solution, *_ = np.linalg.lstsq(design * root[:, None], observed * root, rcond=None)
    return np.asarray(solution, dtype=np.float64)
