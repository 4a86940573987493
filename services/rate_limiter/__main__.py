"""``python -m services.rate_limiter``: the shared rate-limit service (port 8050)."""

from __future__ import annotations

import sys

from services.rate_limiter.app import RateLimiterSettings, bootstrap
from shared.config import ConfigError
from shared.service import run_service


def main() -> int:
    return run_service(
        RateLimiterSettings, bootstrap, startup_errors=(ConfigError, ValueError, OSError)
    )


if __name__ == "__main__":
    sys.exit(main())
