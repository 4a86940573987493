"""``python -m services.risk``: the risk service and its control API (port 8030)."""

from __future__ import annotations

import sys

from services.risk.app import RiskSettings, bootstrap
from shared.config import ConfigError
from shared.service import run_service


def main() -> int:
    return run_service(RiskSettings, bootstrap, startup_errors=(ConfigError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
