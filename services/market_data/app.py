"""market-data's composition root: settings, the REST and WebSocket clients, the worker.

``bootstrap(settings)`` builds the service; ``__main__`` and the tests both call it.
The source is Coinbase (the public endpoints: market data needs no key) or exchange-sim;
the client code is the same either way, only the URLs differ.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import httpx
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis

from services.market_data.pipeline import MarketData, PipelineOptions
from shared.bus import BusKeys, create_redis
from shared.clock import Clock
from shared.coinbase.granularity import Granularity
from shared.coinbase.rest import CoinbaseRest
from shared.coinbase.transport import create_rest_http
from shared.coinbase.ws import MarketDataFeed
from shared.coinbase.ws_events import FeedEvent, FeedSettings
from shared.config import AppConfig, load_config
from shared.ratelimit import RateLimitClient
from shared.service import ReadinessCheck, create_app, redis_ready
from shared.settings import ServiceSettings

__all__ = ["MarketDataSettings", "bootstrap", "candle_granularities"]

CHANNELS = ("level2", "market_trades")


class MarketDataSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True)

    service_name: str = "market-data"
    http_port: int = 8010
    config_dir: Path = Path("config")
    md_source: Literal["coinbase", "sim"] = "coinbase"
    coinbase_rest_url: str = "https://api.coinbase.com"
    coinbase_ws_url: str = "wss://advanced-trade-ws.coinbase.com"
    exchange_sim_url: str = Field(
        default="http://127.0.0.1:8060", description="REST base; its WebSocket is <url>/ws."
    )
    rate_limiter_url: str = "http://127.0.0.1:8050"
    md_sequence_scope: Literal["connection", "product"] = "connection"
    md_granularities: str = Field(
        default="", description="Comma-separated candle seconds; empty: what strategies use."
    )
    md_close_delay_s: float = Field(default=3.0, ge=0, le=300)
    md_candle_poll_ms: int = Field(default=100, ge=5, le=10_000)
    md_backfill_candles: int = Field(default=300, ge=0, le=5000)
    md_book_depth: int = Field(default=10, ge=1, le=200)
    md_book_interval_ms: int = Field(default=250, ge=10, le=60_000)
    md_products_refresh_s: float = Field(default=300, ge=1)
    md_stale_after_s: float = Field(default=30, gt=0)
    md_stream_maxlen: int = Field(default=100_000, ge=1000)

    def urls(self) -> tuple[str, str]:
        """REST base URL and WebSocket URL of the chosen source."""
        if self.md_source == "coinbase":
            return self.coinbase_rest_url, self.coinbase_ws_url
        base = self.exchange_sim_url.rstrip("/")
        return base, "ws" + base.removeprefix("http") + "/ws"


def candle_granularities(settings: MarketDataSettings, config: AppConfig) -> tuple[int, ...]:
    """The candle sizes to publish: the setting, else every enabled strategy's, else 5 min."""
    if settings.md_granularities.strip():
        chosen = {
            Granularity.from_seconds(int(part)).seconds
            for part in settings.md_granularities.split(",")
            if part.strip()
        }
    else:
        chosen = {s.granularity_s for s in config.strategies.strategies if s.enabled}
    return tuple(sorted(chosen)) or (300,)


def bootstrap(
    settings: MarketDataSettings, *, redis: Redis | None = None, clock: Clock | None = None
) -> FastAPI:
    config = load_config(settings.config_dir)
    clock = clock or settings.clock()
    redis = redis or create_redis(settings.redis_url)
    rest_url, ws_url = settings.urls()
    limiter_http = httpx.AsyncClient(base_url=settings.rate_limiter_url, timeout=2)
    limiter = RateLimitClient(limiter_http, config.ratelimits)
    rest_http = create_rest_http(rest_url, limiter)
    products = tuple(p.product_id for p in config.universe.enabled_products())
    options = PipelineOptions(
        products=products,
        granularities=candle_granularities(settings, config),
        feed=FeedSettings(
            url=ws_url, product_ids=products, channels=CHANNELS,
            sequence_scope=settings.md_sequence_scope,
        ),
        close_delay_s=settings.md_close_delay_s,
        candle_poll_s=settings.md_candle_poll_ms / 1000,
        backfill_candles=settings.md_backfill_candles,
        book_depth=settings.md_book_depth,
        book_interval_s=settings.md_book_interval_ms / 1000,
        products_refresh_s=settings.md_products_refresh_s,
        stale_after_s=settings.md_stale_after_s,
    )  # fmt: skip

    async def acquire_ws() -> object:
        return await limiter.acquire("websocket")

    def feed_factory(
        feed_settings: FeedSettings, on_event: Callable[[FeedEvent], Awaitable[None]]
    ) -> MarketDataFeed:
        return MarketDataFeed(feed_settings, acquire=acquire_ws, on_event=on_event)

    worker = MarketData(
        options, redis=redis, keys=BusKeys(settings.bus_prefix),
        rest=CoinbaseRest(rest_http, credentials=None, clock=clock), clock=clock,
        feed_factory=feed_factory, stream_maxlen=settings.md_stream_maxlen,
    )  # fmt: skip

    async def close() -> None:
        await rest_http.aclose()
        await limiter_http.aclose()
        await redis.aclose()

    app = create_app(
        settings,
        workers=[worker],
        readiness={"redis": redis_ready(redis), **_readiness(worker)},
        on_shutdown=[close],
    )
    app.state.market_data = worker
    return app


def _readiness(worker: MarketData) -> dict[str, ReadinessCheck]:
    async def connected() -> bool:
        return worker.feed is not None and worker.feed.connected

    async def books() -> bool:
        feed = worker.feed
        return feed is not None and all(book.ready for book in feed.books.values())

    async def fresh() -> bool:
        return bool(worker.listed) and not worker.stale_products()

    async def backfilled() -> bool:
        return worker.backfilled

    return {"feed": connected, "books": books, "fresh": fresh, "candles": backfilled}
