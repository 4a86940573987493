"""``python -m services.rate_limiter``: the shared rate-limit service (port 8050)."""

from __future__ import annotations

import sys

from services.rate_limiter.app import RateLimiterSettings, bootstrap
from shared.config import ConfigError
from shared.logging import configure_logging
from shared.service import serve
from shared.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings(RateLimiterSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level, secrets=settings.secrets())
    try:
        app = bootstrap(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    serve(app, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
