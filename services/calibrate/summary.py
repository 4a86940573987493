"""What a calibration run prints: the slippage it measured, each fit, each tier it skipped."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.calibrate.export import CalibrationRun
from services.calibrate.fit import HOLD_OUT_EVERY, FitOutcome
from services.calibrate.measure import Execution, SlippageRow
from shared.messages import Liquidity

__all__ = ["render_fit"]

BPS_PLACES = Decimal("0.01")


def render_fit(
    run: CalibrationRun,
    executions: Sequence[Execution],
    measured: Sequence[SlippageRow],
    outcome: FitOutcome,
    unknown_products: Sequence[str],
) -> str:
    lines = [
        *_header(run, executions),
        *_measured(measured, unknown_products),
        *_fits(outcome),
        *(skipped.reason for skipped in outcome.skipped),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _header(run: CalibrationRun, executions: Sequence[Execution]) -> list[str]:
    takers = sum(1 for e in executions if e.liquidity is Liquidity.TAKER)
    fills = sum(e.fills for e in executions)
    return [
        f"Slippage calibration on {run.mode.value} fills, "
        f"{run.window_start.isoformat()} to {run.window_end.isoformat()}",
        f"{fills} fills in {len(executions)} orders: {takers} taker, "
        f"{len(executions) - takers} maker (an order's fills of one liquidity combined)",
        "",
    ]


def _measured(rows: Sequence[SlippageRow], unknown_products: Sequence[str]) -> list[str]:
    lines = [
        "Measured slippage against arrival mid, bps (positive = worse for us), "
        "modeled with the configured parameters:",
        f"  {'tier':<5} {'liquidity':<10} {'size / typical':<15} {'orders':>6} "
        f"{'observed':>10} {'modeled':>10}",
    ]
    for row in rows:
        modeled = "n/a" if row.modeled_bps is None else str(row.modeled_bps.quantize(BPS_PLACES))
        lines.append(
            f"  {row.tier:<5} {row.liquidity.value:<10} {row.bucket:<15} {row.count:>6} "
            f"{row.observed_bps.quantize(BPS_PLACES):>10} {modeled:>10}"
        )
    lines.append("Maker orders are measured but not fitted: the model is the taker cost.")
    if unknown_products:
        lines.append(f"Not in universe.yaml, not measured: {', '.join(unknown_products)}")
    return [*lines, ""]


def _fits(outcome: FitOutcome) -> list[str]:
    if not outcome.fits:
        return []
    lines = [
        f"Fits on taker orders (robust least squares; every {HOLD_OUT_EVERY}th order by time "
        "held out), mean absolute error on the held-out orders, bps:",
        f"  {'tier':<5} {'base':>9} {'impact':>9} {'typical USD':>12} {'fitted on':>9} "
        f"{'held out':>8} {'config':>8} {'fit':>8}",
    ]
    for fit in outcome.fits:
        costs = fit.costs
        lines.append(
            f"  {fit.tier:<5} {costs.base_slippage_bps:>9} {costs.impact_coefficient_bps:>9} "
            f"{costs.typical_notional:>12} {fit.sample_size:>9} {fit.held_out:>8} "
            f"{fit.config_error_bps.quantize(BPS_PLACES):>8} "
            f"{fit.fit_error_bps.quantize(BPS_PLACES):>8}"
        )
    return [*lines, ""]
