"""calibrate: fit the slippage model to recorded fills, and report on a rehearsal.

A batch job, not a service: ``python -m services.calibrate`` reads fills from Postgres,
fits each tier's ``base_slippage_bps`` and ``impact_coefficient_bps`` to its taker
orders, stores the fit (``slippage_calibrations``) and exports it as JSON for
``shared.slippage.load_calibration``; ``python -m services.calibrate report`` summarizes
a PAPER or LIVE run. See docs/calibration.md.
"""

from services.calibrate.cli import main

__all__ = ["main"]
