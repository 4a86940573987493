"""``python -m services.execution``: the execution service (port 8040)."""

from __future__ import annotations

import sys

from services.execution.app import ExecutionSettings, bootstrap
from shared.coinbase.errors import CoinbaseError
from shared.config import ConfigError
from shared.service import run_service


def main() -> int:
    return run_service(
        ExecutionSettings,
        bootstrap,
        startup_errors=(ConfigError, CoinbaseError, ValueError, OSError),
    )


if __name__ == "__main__":
    sys.exit(main())
