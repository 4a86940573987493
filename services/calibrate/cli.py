"""The command line: fit the cost model to recorded fills, or report on a rehearsal.

    python -m services.calibrate [fit] [--since 7d] [--mode LIVE|PAPER] [--export PATH]
    python -m services.calibrate report [--since 24h] [--mode LIVE|PAPER] [--json]

Postgres and the config directory come from the environment (``DATABASE_URL``,
``CONFIG_DIR``); ``--mode`` defaults to ``TRADING_MODE``. Exit status 0 when done, 1
when no tier could be fitted or Postgres or the config failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

from pydantic_settings import SettingsConfigDict
from sqlalchemy.exc import SQLAlchemyError

from services.calibrate.export import CalibrationRun, write_calibration
from services.calibrate.fit import calibrate
from services.calibrate.measure import combine_fills, summarize
from services.calibrate.report import build_report, render_text
from services.calibrate.store import read_fills, read_report_data, save_calibration
from services.calibrate.summary import render_fit
from shared.clock import Clock, LiveClock, ensure_utc
from shared.config import AppConfig, ConfigError, load_config
from shared.db import make_engine
from shared.db.calibrations import latest_calibration
from shared.messages import TradingMode
from shared.settings import ServiceSettings, SettingsError, load_settings
from shared.slippage import CostModel

__all__ = ["CalibrateSettings", "main", "parse_since"]

DEFAULT_EXPORT = Path("calibration/slippage.json")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MODES = (TradingMode.LIVE.value, TradingMode.PAPER.value)


class CalibrateSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True)

    service_name: str = "calibrate"
    config_dir: Path = Path("config")


def parse_since(text: str) -> timedelta | datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` (that long ago) or an ISO-8601 time with an offset."""
    match = _DURATION.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0:
            raise argparse.ArgumentTypeError(f"{text}: the duration must be more than zero")
        return timedelta(**{_UNITS[unit]: amount})
    try:
        return ensure_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text}: not a duration (30m, 24h, 7d, 2w) nor an ISO-8601 time with an offset "
            "(2026-01-01T00:00:00Z, 2026-01-01T09:00:00+09:00)"
        ) from None


def _mode(text: str) -> TradingMode:
    if text.upper() not in _MODES:
        raise argparse.ArgumentTypeError(f"{text}: the mode is LIVE or PAPER")
    return TradingMode(text.upper())


def _parser(report: bool) -> argparse.ArgumentParser:
    if report:
        parser = argparse.ArgumentParser(
            prog="python -m services.calibrate report",
            description="Summarize a PAPER or LIVE run from what Postgres recorded.",
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    else:
        parser = argparse.ArgumentParser(
            prog="python -m services.calibrate",
            description="Fit the slippage model per tier to recorded taker fills; "
            "'python -m services.calibrate report --help' for the rehearsal report.",
        )
        parser.add_argument(
            "--export", type=Path, default=DEFAULT_EXPORT,
            help=f"JSON file of the fitted parameters (default {DEFAULT_EXPORT})",
        )  # fmt: skip
    parser.add_argument(
        "--since", type=parse_since, default=timedelta(hours=24) if report else None,
        help="30m, 24h, 7d, 2w or an ISO-8601 time with offset "
        f"(default: {'24h' if report else 'every recorded fill'})",
    )  # fmt: skip
    parser.add_argument("--mode", type=_mode, help="LIVE or PAPER (default: TRADING_MODE)")
    return parser


def _resolve(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: CalibrateSettings,
    now: datetime,
) -> tuple[TradingMode, datetime | None]:  # fmt: skip
    mode = args.mode or settings.trading_mode
    if mode.value not in _MODES:
        parser.error(f"TRADING_MODE is {mode.value}: give --mode LIVE or --mode PAPER")
    since = now - args.since if isinstance(args.since, timedelta) else args.since
    if since is not None and since >= now:
        parser.error(f"--since {since.isoformat()} is not in the past")
    return mode, since


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    report = bool(arguments) and arguments[0] == "report"
    if arguments and arguments[0] in ("report", "fit"):
        arguments = arguments[1:]
    parser = _parser(report)
    args = parser.parse_args(arguments)
    try:
        settings = load_settings(CalibrateSettings)
        config = load_config(settings.config_dir)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"calibrate: the configuration is invalid:\n{exc}", file=sys.stderr)
        return 1
    now = (clock or LiveClock()).now()
    mode, since = _resolve(parser, args, settings, now)
    try:
        if report:
            return asyncio.run(_report(settings, config, mode, since or now, now, args.json))
        return asyncio.run(_fit(settings, config, mode, since, now, args.export))
    except (SQLAlchemyError, OSError) as exc:
        print(f"calibrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _fit(
    settings: CalibrateSettings, config: AppConfig, mode: TradingMode, since: datetime | None,
    now: datetime, export: Path,
) -> int:  # fmt: skip
    database = make_engine(settings.database_url)
    try:
        async with database.connect() as connection:
            fills = await read_fills(connection, mode, since, now)
        tiers = {p.product_id: int(p.tier) for p in config.universe.products}
        executions, unknown = combine_fills(fills, tiers)
        model = CostModel.from_config(config.universe, config.policy.execution)
        outcome = calibrate(executions, model)
        start = since or (executions[0].filled_at if executions else now)
        run = CalibrationRun(now, mode, start, now, outcome.fits)
        measured = summarize(executions, model, by_size=True)
        print(render_fit(run, executions, measured, outcome, sorted(unknown)), end="")
        if not outcome.fits:
            print("calibrate: no tier could be fitted; nothing stored", file=sys.stderr)
            return 1
        async with database.begin() as connection:
            await save_calibration(connection, run)
    finally:
        await database.dispose()
    write_calibration(export, run)
    print(f"Stored {len(run.fits)} calibration rows; parameters exported to {export}")
    return 0


async def _report(
    settings: CalibrateSettings, config: AppConfig, mode: TradingMode, since: datetime,
    now: datetime, as_json: bool,
) -> int:  # fmt: skip
    database = make_engine(settings.database_url)
    try:
        async with database.connect() as connection:
            data = await read_report_data(connection, mode, since, now)
            calibration = await latest_calibration(connection, mode)
    finally:
        await database.dispose()
    model = CostModel.from_config(config.universe, config.policy.execution, calibration)
    tiers = {p.product_id: int(p.tier) for p in config.universe.products}
    report = build_report(data, model, tiers)
    print(json.dumps(report.as_json(), indent=2) if as_json else render_text(report), end="")
    if as_json:
        print()
    return 0
