"""A market-data stack for tests: exchange-sim, the rate limiter and market-data in-process,
on one scaled clock so that minutes of market pass in seconds."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from services.market_data.app import MarketDataSettings
from services.market_data.app import bootstrap as market_data_app
from services.market_data.pipeline import MarketData
from shared.bus import ENVELOPE_FIELD, BusKeys
from shared.candle_files import Candle
from shared.clock import ScaledClock
from shared.coinbase.granularity import Granularity
from shared.messages import CandleClosed, Envelope, Payload, decode
from tests.support.venue import CONFIG_DIR, SimHandle, rate_limiter_service, running_sim, serving

__all__ = [
    "MarketStack",
    "assert_candles_are_the_venues",
    "market_stack",
    "published_candles",
    "venue_candles",
]

SPEED = 120.0  # one minute of market every half second


@dataclass
class MarketStack:
    sim: SimHandle
    market_data: FastAPI
    clock: ScaledClock
    rate_limiter_url: str

    @property
    def worker(self) -> MarketData:
        worker: MarketData = self.market_data.state.market_data
        return worker


@contextlib.asynccontextmanager
async def market_stack(
    redis_url: str, keys: BusKeys, *, sim: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[MarketStack]:
    clock = ScaledClock(datetime.now(UTC), SPEED)
    sim_settings = {"sim_history_minutes": 240, "sim_step_ms": 20, **(sim or {})}
    async with (
        running_sim(clock=clock, **sim_settings) as venue,
        rate_limiter_service(redis_url, keys.prefix) as limiter_url,
    ):
        md_settings = MarketDataSettings(
            **{
                "md_source": "sim", "exchange_sim_url": venue.base_url,
                "rate_limiter_url": limiter_url, "redis_url": redis_url,
                "bus_prefix": keys.prefix, "config_dir": CONFIG_DIR,
                "md_granularities": "60,300", "md_close_delay_s": 10,
                "md_candle_poll_ms": 20, "md_backfill_candles": 30,
                "md_stale_after_s": 5, **settings,
            }
        )  # fmt: skip
        app = market_data_app(md_settings, clock=clock)
        async with serving(app):
            yield MarketStack(venue, app, clock, limiter_url)


async def published_candles(
    redis: Redis, keys: BusKeys
) -> list[tuple[str, Envelope[Payload], CandleClosed]]:
    """Every md.candles entry in stream order: (entry id, envelope, payload)."""
    entries = await redis.xrange(keys.stream(CandleClosed.STREAM))
    result = []
    for entry_id, fields in entries:
        envelope = decode(fields[ENVELOPE_FIELD.encode()])
        assert isinstance(envelope.data, CandleClosed)
        result.append((entry_id.decode(), envelope, envelope.data))
    return result


async def venue_candles(
    sim: SimHandle, product_id: str, granularity_s: int, start: int, end: int
) -> dict[int, Candle]:
    """The venue's own candles with starts in [start, end), from its REST endpoint."""
    found: dict[int, Candle] = {}
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as http:
        for page_start in range(start, end, 300 * granularity_s):
            page_end = min(end, page_start + 300 * granularity_s) - 1
            response = await http.get(
                f"/api/v3/brokerage/market/products/{product_id}/candles",
                params={"start": page_start, "end": page_end,
                        "granularity": Granularity.from_seconds(granularity_s).value},
            )  # fmt: skip
            response.raise_for_status()
            for row in response.json()["candles"]:
                candle = Candle(
                    int(row["start"]), Decimal(row["low"]), Decimal(row["high"]),
                    Decimal(row["open"]), Decimal(row["close"]), Decimal(row["volume"]),
                )  # fmt: skip
                if start <= candle.start < end:
                    found[candle.start] = candle
    return found


async def assert_candles_are_the_venues(sim: SimHandle, redis: Redis, keys: BusKeys) -> int:
    """Every md.candles entry of BTC-USD and ETH-USD at 60 s and 300 s equals the venue's
    candle; no bucket of the venue in the published span is missing, doubled or reordered.
    Returns how many candles were checked."""
    routes: dict[tuple[str, int], list[CandleClosed]] = defaultdict(list)
    for _entry, _envelope, candle in await published_candles(redis, keys):
        routes[(candle.product_id, candle.granularity_s)].append(candle)
    assert set(routes) == {(p, g) for p in ("BTC-USD", "ETH-USD") for g in (60, 300)}
    for (product_id, granularity), candles in routes.items():
        starts = [int(c.start.timestamp()) for c in candles]
        assert starts == sorted(set(starts)), f"{product_id}/{granularity}: repeated or reordered"
        venue = await venue_candles(sim, product_id, granularity, starts[0], starts[-1] + 1)
        assert sorted(venue) == starts, f"{product_id}/{granularity}: a bucket lost or extra"
        for candle in candles:
            want = venue[int(candle.start.timestamp())]
            assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
                want.open, want.high, want.low, want.close, want.volume
            ), f"{product_id}/{granularity} {candle.start}"  # fmt: skip
    return sum(len(c) for c in routes.values())
