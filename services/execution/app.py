"""execution's composition root: order intents in, orders to the venue, reports out.

PAPER trades on :class:`PaperVenue` (the matching engine fed by ``md.books`` and
``md.ticks``); LIVE on :class:`CoinbaseVenue` through the rate limiter, with the CDP key
from the environment. A loop restores and reconciles first, then polls the venue and
fires the TTLs; the ``risk.orders`` consumer starts only once the restore is done.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.execution.paper import PaperVenue
from services.execution.reports import RedisReports
from services.execution.service import ExecutionService
from services.execution.store import ExecutionStore
from services.execution.venues import Venue
from shared.aio import pause_unless_stopped
from shared.bus import BusKeys, ConsumerSettings, Delivery, Handler, StreamConsumer, create_redis
from shared.clock import Clock
from shared.config import AppConfig, load_config
from shared.db import make_engine
from shared.db.calibrations import latest_cost_model
from shared.logging import get_logger
from shared.matching.types import FeeRates, Fill
from shared.messages import (
    BookUpdated,
    CancelOrders,
    Envelope,
    OrderFilled,
    Payload,
    PlaceOrder,
    TickUpdated,
    TradingMode,
)
from shared.money import Side
from shared.products import ProductCatalog
from shared.service import Hook, Worker, create_app, postgres_ready, redis_ready
from shared.settings import ServiceSettings

__all__ = ["ExecutionLoop", "ExecutionSettings", "bootstrap"]

_log = get_logger("execution")
GROUP = "execution"
RESTORE_RETRY_S = 5.0


class ExecutionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True)

    service_name: str = "execution"
    http_port: int = 8040
    config_dir: Path = Path("config")
    coinbase_rest_url: str = Field(
        default="https://api.coinbase.com", description="LIVE orders go here (exchange-sim too)."
    )
    rate_limiter_url: str = "http://127.0.0.1:8050"
    cb_api_key: SecretStr | None = None
    cb_api_secret: SecretStr | None = None
    exec_consumer: str = Field(
        default="execution-1", description="Stable consumer name: a restart resumes its entries."
    )
    exec_timer_interval_s: float = Field(default=0.25, gt=0, le=10)
    exec_quote_max_age_s: float = Field(default=10, gt=0)
    exec_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    exec_reconcile_budget: int = Field(default=50, ge=1, le=10_000)
    exec_paper_latency_ms: int = Field(default=100, ge=0, le=60_000)
    exec_paper_depletion_s: float = Field(default=10, ge=0)
    exec_paper_balances: dict[str, Decimal] = Field(
        default_factory=lambda: {"USD": Decimal(10_000)},
        description="JSON: what the paper account starts with, before any recorded fill.",
    )
    exec_venue_timeout_s: float = Field(default=10, gt=0, le=120)
    exec_market_read_interval_ms: int = Field(
        default=50, ge=0, le=1000,
        description="Ticks and books are read in batches this often (a paper fill or a maker "
        "price follows up to this late); 0: one read an entry.",
    )  # fmt: skip
    exec_stream_maxlen: int = Field(default=100_000, ge=1000)

    @model_validator(mode="after")
    def _live_needs_a_key(self) -> ExecutionSettings:
        if self.trading_mode is TradingMode.LIVE:
            from shared.coinbase.auth import credentials_from_env
            from shared.coinbase.errors import CredentialsError

            try:
                credentials_from_env(self.key_env(), required=True)
            except CredentialsError as exc:
                raise ValueError(str(exc)) from None
        return self

    def key_env(self) -> dict[str, str]:
        return {
            "CB_API_KEY": self.cb_api_key.get_secret_value() if self.cb_api_key else "",
            "CB_API_SECRET": self.cb_api_secret.get_secret_value() if self.cb_api_secret else "",
        }

    @property
    def venue_kind(self) -> Literal["paper", "coinbase"]:
        return "coinbase" if self.trading_mode is TradingMode.LIVE else "paper"


class ExecutionLoop:
    """Restores first (retrying until the venue answers), then runs the timers."""

    def __init__(
        self, service: ExecutionService, catalog: ProductCatalog, interval_s: float,
        before_restore: Hook | None = None, refresh_s: float = 30.0,
    ) -> None:  # fmt: skip
        self._service = service
        self._catalog = catalog
        self._interval_s = interval_s
        self._before_restore = before_restore
        self._refresh_s = refresh_s
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = 0.0
        while not self._stop.is_set():
            try:
                if loop.time() >= next_refresh:
                    await self._refresh_products()
                    next_refresh = loop.time() + self._refresh_s
                pause = self._interval_s
                if not self._service.restored.is_set():
                    pause = RESTORE_RETRY_S  # unless it succeeds, the next try waits this long
                    await self._restore()
                    pause = self._interval_s
                else:
                    await self._service.on_timer()
            except Exception as exc:  # an outage of Postgres, Redis or the venue: next round
                _log.warning(
                    "execution round failed", error=f"{type(exc).__name__}: {exc}", exc_info=True
                )
                next_refresh = 0.0
            await pause_unless_stopped(self._stop, pause)

    async def _refresh_products(self) -> None:
        products = await self._catalog.all()
        self._service.set_products(products)
        venue = self._service.venue
        if isinstance(venue, PaperVenue):
            venue.account.set_rules({p: info.rules() for p, info in products.items()})

    async def _restore(self) -> None:
        if not self._service.products:
            await self._refresh_products()
        if not self._service.products:
            _log.info("waiting for market-data's product catalog before taking orders")
            return
        if self._before_restore is not None:
            await self._before_restore()
            self._before_restore = None
        await self._service.restore()

    def stop(self) -> None:
        self._stop.set()


class AfterRestore:
    """A worker that starts ``worker`` only once the service has restored."""

    def __init__(self, worker: Worker, restored: asyncio.Event) -> None:
        self._worker = worker
        self._restored = restored
        self._stop = asyncio.Event()

    async def run(self) -> None:
        stopping = asyncio.create_task(self._stop.wait())
        restored = asyncio.create_task(self._restored.wait())
        await asyncio.wait([stopping, restored], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        restored.cancel()
        if not self._stop.is_set():
            await self._worker.run()

    def stop(self) -> None:
        self._stop.set()
        self._worker.stop()


def fee_rates(config: AppConfig) -> FeeRates:
    execution = config.policy.execution
    return FeeRates(maker=execution.maker_fee_bps / 10_000, taker=execution.taker_fee_bps / 10_000)


def build_venue(
    settings: ExecutionSettings, config: AppConfig, clock: Clock
) -> tuple[Venue, list[Hook]]:
    """PAPER's matching engine, or LIVE's Coinbase through the rate limiter; and its closers."""
    if settings.venue_kind == "paper":
        paper = PaperVenue(
            {}, fees=fee_rates(config), balances=settings.exec_paper_balances,
            latency=timedelta(milliseconds=settings.exec_paper_latency_ms),
            depletion=timedelta(seconds=settings.exec_paper_depletion_s),
            run_id=f"paper-{clock.now_ns()}",
        )  # fmt: skip
        return paper, []
    # LIVE's HTTP and key-signing stack is loaded in LIVE only: PAPER has no use for it
    # and it is about 10 MB of each process's memory.
    import httpx

    from services.execution.coinbase_venue import CoinbaseVenue
    from shared.coinbase.auth import credentials_from_env
    from shared.coinbase.rest import CoinbaseRest
    from shared.coinbase.transport import create_rest_http
    from shared.ratelimit.client import RateLimitClient

    limiter_http = httpx.AsyncClient(base_url=settings.rate_limiter_url, timeout=5)
    rest_http = create_rest_http(
        settings.coinbase_rest_url, RateLimitClient(limiter_http, config.ratelimits),
        timeout_s=settings.exec_venue_timeout_s,
    )  # fmt: skip
    credentials = credentials_from_env(settings.key_env(), required=True)
    rest = CoinbaseRest(rest_http, credentials=credentials, clock=clock)
    venue = CoinbaseVenue(rest, reconcile_budget=settings.exec_reconcile_budget,
                          poll_interval_s=settings.exec_poll_interval_s)  # fmt: skip
    return venue, [rest_http.aclose, limiter_http.aclose]


class StreamHandlers:
    """Translates stream entries into calls on the service (and on the paper venue)."""

    def __init__(self, service: ExecutionService, clock: Clock) -> None:
        self._service = service
        self._clock = clock
        venue = service.venue
        self._paper = venue if isinstance(venue, PaperVenue) else None

    async def on_command(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        del delivery
        command = envelope.data
        if isinstance(command, PlaceOrder):
            await self._service.on_place(command, envelope.origin_ts)
        elif isinstance(command, CancelOrders):
            await self._service.on_cancel(command)

    async def on_market(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        del delivery
        data = envelope.data
        if isinstance(data, TickUpdated):
            self._service.on_tick(data)
            if self._paper is not None:
                self._paper.on_tick(data, self._clock.now())
        elif isinstance(data, BookUpdated) and self._paper is not None:
            self._paper.on_book(data, self._clock.now())


def bootstrap(
    settings: ExecutionSettings,
    *,
    redis: Redis | None = None,
    database: AsyncEngine | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    config = load_config(settings.config_dir)
    clock = clock or settings.clock()
    redis = redis or create_redis(settings.redis_url)
    database = database or make_engine(settings.database_url)
    keys = BusKeys(settings.bus_prefix)
    venue, closers = build_venue(settings, config, clock)
    store = ExecutionStore(database, settings.trading_mode, venue.name)
    service = ExecutionService(
        config=config, venue=venue, store=store,
        reports=RedisReports(redis, keys, clock, settings.exec_stream_maxlen), clock=clock,
        mode=settings.trading_mode, products={}, quote_max_age_s=settings.exec_quote_max_age_s,
    )  # fmt: skip
    handlers = StreamHandlers(service, clock)

    def consumer(stream: str, handler: Handler, **options: Any) -> StreamConsumer:
        consumer_settings = ConsumerSettings(
            stream=stream, group=GROUP, consumer=settings.exec_consumer,
            outbox_maxlen=settings.exec_stream_maxlen, **options,
        )  # fmt: skip
        return StreamConsumer(redis, consumer_settings, handler, keys=keys)

    paper = venue if isinstance(venue, PaperVenue) else None

    async def before_restore() -> None:
        # modeled slippage: the latest calibration for this mode where there is one
        service.set_costs(await latest_cost_model(database, config, settings.trading_mode))
        if paper is not None:
            paper.restore_fills(_as_fills(await store.venue_fills()))

    # a tick or book is superseded by the next: one lost at a crash, or failed, is not retried
    market = {"start_id": "$", "handled_ttl_s": None, "batch_size": 256, "at_most_once": True,
              "read_interval_ms": settings.exec_market_read_interval_ms}  # fmt: skip
    workers: list[Worker] = [
        ExecutionLoop(
            service,
            ProductCatalog(redis, keys.prefix),
            settings.exec_timer_interval_s,
            before_restore,
        ),  # fmt: skip
        consumer(TickUpdated.STREAM, handlers.on_market, **market),
        # a lost cancel would leave an order working through a pause: commands are retried
        # through any outage rather than dead-lettered after a few failures. No handled
        # markers: an intent taken on before is refused by its key in Postgres, and a
        # cancel reaches only open intents (see ExecutionService.on_place).
        AfterRestore(
            consumer(
                PlaceOrder.STREAM, handlers.on_command, max_deliveries=1_000_000, handled_ttl_s=None
            ),
            service.restored,
        ),  # fmt: skip
    ]
    if isinstance(venue, PaperVenue):
        workers.append(consumer(BookUpdated.STREAM, handlers.on_market, **market))

    async def restored() -> bool:
        return service.restored.is_set()

    async def close() -> None:
        for closer in closers:
            await closer()
        await redis.aclose()
        await store.close()
        await database.dispose()

    readiness = {
        "redis": redis_ready(redis), "postgres": postgres_ready(database), "restored": restored,
    }  # fmt: skip

    async def drain() -> None:  # intents being driven get the time a worker gets to stop
        await service.drain(settings.shutdown_grace_s)

    app = create_app(settings, workers=workers, on_shutdown=[drain, close], readiness=readiness)
    app.state.execution = service
    return app


def _as_fills(filled: list[OrderFilled]) -> list[Fill]:
    return [
        Fill(
            trade_id=f.trade_id,
            order_id=f.client_order_id,
            product_id=f.product_id,
            side=Side(f.side),
            price=f.price,
            size=f.size,
            commission=f.fee,
            liquidity=f.liquidity,
            time=f.filled_at,
        )  # fmt: skip
        for f in filled
    ]
