"""Download Coinbase candles for offline use (backtests, exchange-sim replays).

    python -m services.market_data.download --product BTC-USD --granularity ONE_MINUTE \\
        --start 2026-01-01T00:00:00Z --end 2026-01-08T00:00:00Z --out data/BTC-USD.parquet

Requests go through the rate limiter (``--rate-limiter-url``); when it cannot be reached
the client paces itself on a local bucket at half the public budget. The public
``/market`` endpoints are used, so no key is needed. The file (``.parquet`` or ``.csv``,
columns ``start,low,high,open,close,volume``) is written atomically when every page
has arrived; a failed download leaves no partial file behind.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

import httpx

from shared.candle_files import Candle, write_candles
from shared.clock import LiveClock, ensure_utc
from shared.coinbase.errors import CoinbaseError
from shared.coinbase.granularity import Granularity
from shared.coinbase.rest import CoinbaseRest
from shared.coinbase.transport import create_rest_http
from shared.config import ConfigError, load_config
from shared.logging import configure_logging, get_logger
from shared.ratelimit import RateLimitClient

__all__ = ["download", "main"]

_log = get_logger("market_data.download")


async def download(
    rest: CoinbaseRest, product_id: str, granularity: str, start: datetime, end: datetime
) -> list[Candle]:
    """Every candle in ``[start, end)``, ascending, logging progress per page."""
    candles: list[Candle] = []
    async for page in rest.candle_pages(product_id, start, end, granularity):
        candles += [
            Candle(c.start, c.low, c.high, c.open, c.close, c.volume) for c in page
        ]  # fmt: skip
        _log.info("page downloaded", product=product_id, candles=len(candles))
    return candles


def _time(text: str) -> datetime:
    try:
        return ensure_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text}: not an RFC 3339 time with a timezone, e.g. 2026-01-01T00:00:00Z"
        ) from None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.market_data.download")
    parser.add_argument("--product", required=True, help="e.g. BTC-USD")
    parser.add_argument("--granularity", required=True, choices=[g.value for g in Granularity])
    parser.add_argument("--start", required=True, type=_time, help="RFC 3339, inclusive")
    parser.add_argument("--end", required=True, type=_time, help="RFC 3339, exclusive")
    parser.add_argument("--out", required=True, type=Path, help="a .parquet or .csv file")
    parser.add_argument("--base-url", default="https://api.coinbase.com")
    parser.add_argument("--rate-limiter-url", default="http://127.0.0.1:8050")
    parser.add_argument("--config-dir", type=Path, default=Path("config"))
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error("--end must be after --start")
    if args.out.suffix not in (".parquet", ".csv"):
        parser.error("--out must end in .parquet or .csv")
    return args


async def _run(args: argparse.Namespace) -> int:
    budgets = load_config(args.config_dir).ratelimits
    async with httpx.AsyncClient(base_url=args.rate_limiter_url, timeout=2) as limiter_http:
        limiter = RateLimitClient(limiter_http, budgets)
        async with create_rest_http(args.base_url, limiter) as http:
            rest = CoinbaseRest(http, credentials=None, clock=LiveClock())
            candles = await download(rest, args.product, args.granularity, args.start, args.end)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = write_candles(args.out, candles)
    _log.info("candles written", path=str(args.out), rows=rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    configure_logging("market-data-download", "INFO")
    try:
        return asyncio.run(_run(args))
    except (CoinbaseError, ConfigError, OSError, ValueError) as exc:
        print(f"download failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
