"""``python -m services.exchange_sim``: a local Coinbase Advanced Trade venue (port 8060).

Settings come from the environment (``SIM_*``, see docs/exchange-sim.md); the command
line can override the port and turn on TLS for clients that insist on https/wss::

    python -m services.exchange_sim --port 8443 --tls-cert cert.pem --tls-key key.pem
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.exchange_sim.app import ExchangeSimSettings, bootstrap
from shared.logging import configure_logging
from shared.service import serve
from shared.settings import SettingsError, load_settings


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.exchange_sim", description=__doc__)
    parser.add_argument("--host", help="listen address (default HTTP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default HTTP_PORT or 8060)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve https and wss")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--replay-dir", type=Path, help="replay <PRODUCT>.csv/.parquet candles")
    parser.add_argument("--speed", type=float, help="replay speed (1 = real time)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    overrides = {
        name: value
        for name, value in (
            ("http_host", args.host), ("http_port", args.port),
            ("sim_replay_dir", args.replay_dir), ("sim_replay_speed", args.speed),
        )
        if value is not None
    }  # fmt: skip
    try:
        settings = load_settings(ExchangeSimSettings, **overrides)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level, secrets=settings.secrets())
    try:
        app = bootstrap(settings)
    except (ValueError, OSError) as exc:
        print(f"exchange-sim cannot start: {exc}", file=sys.stderr)
        return 2
    serve(app, settings, tls_cert=args.tls_cert, tls_key=args.tls_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
