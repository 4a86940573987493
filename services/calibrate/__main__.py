"""``python -m services.calibrate``: fit the cost model, or ``report`` on a rehearsal."""

from __future__ import annotations

import sys

from services.calibrate.cli import main

if __name__ == "__main__":
    sys.exit(main())
