"""A calibration run and its JSON export, the file ``shared.slippage.load_calibration`` reads.

The file names the run's mode and data window and, per fitted tier, the parameters as
decimal strings (never floats), how many orders they were fitted on, and their error on
the held-out orders next to the configured model's. Tiers that could not be fitted are
absent: whoever loads the file keeps the configured parameters for them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.calibrate.fit import TierFit
from shared.messages import TradingMode

__all__ = ["CalibrationRun", "calibration_document", "write_calibration"]


@dataclass(frozen=True)
class CalibrationRun:
    """What one run fitted, on which fills (mode and time window), and when."""

    created_at: datetime
    mode: TradingMode
    window_start: datetime
    window_end: datetime
    fits: list[TierFit]


def calibration_document(run: CalibrationRun) -> dict[str, Any]:
    return {
        "created_at": run.created_at.isoformat(),
        "mode": run.mode.value,
        "window": {"start": run.window_start.isoformat(), "end": run.window_end.isoformat()},
        "tiers": {str(fit.tier): _tier(fit) for fit in run.fits},
    }


def _tier(fit: TierFit) -> dict[str, Any]:
    return {
        "base_slippage_bps": str(fit.costs.base_slippage_bps),
        "impact_coefficient_bps": str(fit.costs.impact_coefficient_bps),
        "typical_notional_usd": str(fit.costs.typical_notional),
        "sample_size": fit.sample_size,
        "held_out": fit.held_out,
        "fit_error_bps": str(fit.fit_error_bps),
        "config_error_bps": str(fit.config_error_bps),
    }


def write_calibration(path: Path, run: CalibrationRun) -> None:
    """Write the export atomically: a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(calibration_document(run), indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
