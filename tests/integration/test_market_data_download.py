"""``python -m services.market_data.download`` against exchange-sim, through the rate limiter."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.exchange_sim.candles import Granularity
from shared.candle_files import load_candles
from shared.clock import LiveClock
from tests.support.venue import rate_limiter_service, running_sim

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def _download(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.market_data.download", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
async def test_download_writes_every_candle_of_the_range(tmp_path, redis_url, bus_keys, suffix):
    end = LiveClock().now().replace(second=0, microsecond=0) - timedelta(minutes=2)
    start = end - timedelta(minutes=400)  # two requests of at most 350
    out = tmp_path / f"BTC-USD{suffix}"
    async with running_sim(sim_history_minutes=500) as sim:
        async with rate_limiter_service(redis_url, bus_keys.prefix) as limiter_url:
            code, output = await _download(
                "--product", "BTC-USD", "--granularity", "ONE_MINUTE",
                "--start", start.isoformat(), "--end", end.isoformat(), "--out", str(out),
                "--base-url", sim.base_url, "--rate-limiter-url", limiter_url,
            )  # fmt: skip
        store = sim.venue.candles["BTC-USD"]
        expected = store.candles(int(start.timestamp()), int(end.timestamp()),
                                 Granularity.ONE_MINUTE)  # fmt: skip
    assert code == 0, output
    assert "fallback" not in output  # every request took a token from the service
    written = load_candles(out)
    assert [c.start for c in written] == list(
        range(int(start.timestamp()), int(end.timestamp()), 60)
    )
    assert written == sorted(expected, key=lambda c: c.start)


async def test_download_refuses_bad_arguments_clearly(tmp_path):
    code, output = await _download(
        "--product", "BTC-USD", "--granularity", "ONE_MINUTE", "--start", "2026-01-02T00:00:00",
        "--end", "2026-01-01T00:00:00Z", "--out", str(tmp_path / "x.parquet"),
    )  # fmt: skip
    assert code == 2 and "timezone" in output
    code, output = await _download(
        "--product", "BTC-USD", "--granularity", "ONE_MINUTE", "--start", "2026-01-02T00:00:00Z",
        "--end", "2026-01-01T00:00:00Z", "--out", str(tmp_path / "x.parquet"),
    )  # fmt: skip
    assert code == 2 and "--end must be after --start" in output
