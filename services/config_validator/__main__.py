"""``python -m services.config_validator [--config-dir DIR] [--format text|json]``.

Exit status: 0 valid (warnings allowed), 1 invalid, 2 a file missing or unparsable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.config_validator.report import validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.config_validator",
        description="Check config/ before anything trades: schema, sanity checks, LIVE secrets.",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=Path(os.environ.get("CONFIG_DIR", "config")),
        help="directory with policy.yaml, universe.yaml, ratelimits.yaml, strategies.yaml "
        "(default: $CONFIG_DIR or ./config)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    report = validate(args.config_dir, os.environ)
    print(report.as_json() if args.format == "json" else report.as_text())
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main())
