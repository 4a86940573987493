"""``python -m services.backtest``: the services' strategy, risk and execution over history.

Example::

    python -m services.backtest --strategy majors_trend \\
        --data data/BTC-USD.csv --trades ETH-USD=data/trades/ETH-USD.parquet \\
        --from 2026-01-01T00:00:00+00:00 --slippage model --out backtest-output

Exit status 0 on a finished run, 2 on bad arguments, data or config (the message says
which).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tqdm import tqdm

from services.backtest.charts import write_charts
from services.backtest.engine import BacktestOptions
from services.backtest.run import BacktestSpec, fee_model, run_backtest
from shared.clock import ensure_utc
from shared.config import ConfigError, load_config
from shared.slippage import CostModel, load_calibration

__all__ = ["main", "parse_args"]

DEFAULT_CALIBRATION = Path("calibration/slippage.json")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.backtest",
        description="Backtest strategies with the services' own risk and execution code.",
    )
    parser.add_argument(
        "--strategy",
        action="append",
        required=True,
        metavar="NAME",
        help="a strategy of strategies.yaml (repeat for several)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="FILE",
        help="candle files (.csv, .parquet) named PRODUCT.csv, or PRODUCT=FILE",
    )
    parser.add_argument(
        "--trades",
        nargs="+",
        default=[],
        metavar="FILE",
        help="trade files (time,price,size[,side,trade_id]; .csv, .parquet), named as --data;"
        " a product is given by --data or by --trades",
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=_utc,
        metavar="TIME",
        help="trade from this ISO-8601 time; earlier candles only warm up",
    )
    parser.add_argument(
        "--to", dest="end", type=_utc, metavar="TIME", help="stop at this ISO-8601 time"
    )
    parser.add_argument(
        "--fees", metavar="MAKER/TAKER|none", help="fee rates in bps (default: policy.yaml's)"
    )
    parser.add_argument("--slippage", choices=("model", "calibrated", "none"), default="model")
    parser.add_argument(
        "--calibration",
        type=Path,
        default=DEFAULT_CALIBRATION,
        help=f"with --slippage calibrated (default {DEFAULT_CALIBRATION})",
    )
    parser.add_argument("--capital", type=Decimal, default=Decimal(10_000), help="USD")
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=100,
        help="order travel time to the venue, as the paper venue's",
    )
    parser.add_argument("--config-dir", type=Path, default=Path("config"))
    parser.add_argument("--out", type=Path, default=Path("backtest-output"))
    parser.add_argument(
        "--no-compare", action="store_true", help="skip the second run with fees and slippage off"
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.data and not args.trades:
        parser.error("one of the arguments --data --trades is required")
    return args


def _utc(text: str) -> datetime:
    try:
        return ensure_utc(datetime.fromisoformat(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: an ISO-8601 time with offset: {exc}") from None


def _data(items: Sequence[str]) -> list[tuple[str, Path]]:
    data = []
    for item in items:
        product_id, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"no such file: {file}")
        data.append((product_id or file.stem.upper(), file))
    return data


def _cost(args: argparse.Namespace, config_dir: Path) -> CostModel:
    config = load_config(config_dir)
    calibration = None
    if args.slippage == "calibrated":
        if not args.calibration.is_file():
            raise ValueError(
                f"{args.calibration} not found: run python -m services.calibrate first,"
                " or pass --calibration FILE"
            )
        calibration = load_calibration(args.calibration)
    cost = CostModel.from_config(config.universe, config.policy.execution, calibration)
    if args.slippage == "none":
        cost = cost.without_slippage()
    return fee_model(cost, args.fees)


async def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir)
    spec = BacktestSpec(
        config=config, strategy_names=args.strategy, data=_data(args.data),
        trades=_data(args.trades), cost=_cost(args, args.config_dir), end=args.end,
        options=BacktestOptions(capital=args.capital, trade_from=args.start,
                                latency=timedelta(milliseconds=args.latency_ms)),
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(desc="candles", unit=" candles", disable=not show, mininterval=0.5) as bar:
        result = await run_backtest(spec, out_dir=args.out, on_candle=lambda: bar.update())
    summary = result.summary
    if not args.no_compare:
        free = dataclasses.replace(spec, cost=spec.cost.without_fees().without_slippage())
        summary = dataclasses.replace(
            summary, no_cost_return_pct=(await run_backtest(free)).summary.total_return_pct
        )
    title = f"{', '.join(args.strategy)} on {', '.join(spec.products)}"
    outputs = write_charts(
        args.out, summary, args.out / "equity.csv", args.out / "trades.csv", title=title
    )
    print(f"backtest: {title}; costs: {spec.cost.source}, slippage {args.slippage}")
    for line in summary.lines():
        print(f"  {line}")
    print(f"  trades.csv, equity.csv and {', '.join(p.name for p in outputs.values())} "
          f"in {args.out}")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except (ValueError, ConfigError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
