"""``python -m services.signal``: the signal service (port 8020)."""

from __future__ import annotations

import sys

from services.signal.app import SignalSettings, bootstrap
from shared.config import ConfigError
from shared.service import run_service


def main() -> int:
    return run_service(SignalSettings, bootstrap, startup_errors=(ConfigError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
