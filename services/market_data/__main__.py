"""``python -m services.market_data``: the market-data service (port 8010)."""

from __future__ import annotations

import sys

from services.market_data.app import MarketDataSettings, bootstrap
from shared.config import ConfigError
from shared.service import run_service


def main() -> int:
    return run_service(
        MarketDataSettings, bootstrap, startup_errors=(ConfigError, ValueError, OSError)
    )


if __name__ == "__main__":
    sys.exit(main())
