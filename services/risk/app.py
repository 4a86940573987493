"""risk's composition root: proposals, reports and ticks in; decisions and orders out.

Three stream consumers (``signal.proposals``, ``exec.reports``, ``md.ticks``), a
supervisor that retries flatten exits and keeps product rules and equity marks current,
and the control API, all around one :class:`RiskService`.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from fastapi import FastAPI
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.risk.api import control_router
from services.risk.control_auth import ControlTokenVerifier
from services.risk.service import RiskService
from services.risk.store import RiskStore
from shared.aio import pause_unless_stopped
from shared.bus import BusKeys, ConsumerSettings, Handler, StreamConsumer, create_redis
from shared.clock import Clock
from shared.config import load_config
from shared.db import make_engine
from shared.logging import get_logger
from shared.messages import OrderFilled, TickUpdated, TradeProposed, TradingMode
from shared.service import Worker, create_app, postgres_ready, redis_ready
from shared.settings import ServiceSettings

__all__ = ["RiskSettings", "Supervisor", "bootstrap"]

_log = get_logger("risk")
GROUP = "risk"


class RiskSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True)

    service_name: str = "risk"
    http_port: int = 8030
    config_dir: Path = Path("config")
    control_api_token: SecretStr | None = Field(
        default=None,
        description="Secret that signs control API requests (each with its own token); LIVE "
        "requires one.",
    )
    risk_capital_usd: Decimal = Field(
        default=Decimal("10000"), gt=0, description="Capital the system trades with, in USD."
    )
    risk_consumer: str = Field(
        default="risk-1", description="Stable consumer name: a restart resumes its entries."
    )
    risk_supervise_interval_s: float = Field(default=1.0, gt=0, le=60)
    risk_proposal_max_age_s: float = Field(
        default=60, gt=0, description="Older entry proposals are rejected as stale_proposal."
    )
    risk_tick_max_age_s: float = Field(
        default=10, gt=0, description="Older ticks only mark positions; they fire no stops."
    )
    risk_tick_read_interval_ms: int = Field(
        default=50, ge=0, le=1000,
        description="Ticks are read in batches this often (a stop fires up to this late); 0: "
        "one read a tick.",
    )  # fmt: skip
    risk_stream_maxlen: int = Field(default=100_000, ge=1000)

    @model_validator(mode="after")
    def _token(self) -> RiskSettings:
        token = self.control_api_token
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError("CONTROL_API_TOKEN must be at least 16 characters")
        if self.trading_mode is TradingMode.LIVE and token is None:
            raise ValueError("CONTROL_API_TOKEN is required in LIVE: the kill switch needs it")
        return self


class Supervisor:
    """Restores risk's state, then runs the service's periodic work until stopped."""

    def __init__(self, service: RiskService, interval_s: float) -> None:
        self._service = service
        self._interval_s = interval_s
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._service.supervise()
            except Exception as exc:  # a Postgres or Redis outage: retried next round
                _log.warning(
                    "risk supervision failed", error=f"{type(exc).__name__}: {exc}", exc_info=True
                )
            await pause_unless_stopped(self._stop, self._interval_s)

    def stop(self) -> None:
        self._stop.set()


def bootstrap(
    settings: RiskSettings,
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
    if settings.control_api_token is None:
        _log.warning("CONTROL_API_TOKEN is not set: the control API refuses every request")
    service = RiskService(
        config=config, capital=settings.risk_capital_usd,
        store=RiskStore(database, settings.trading_mode), redis=redis, keys=keys, clock=clock,
        mode=settings.trading_mode, stream_maxlen=settings.risk_stream_maxlen,
        tick_max_age_s=settings.risk_tick_max_age_s,
        proposal_max_age_s=settings.risk_proposal_max_age_s,
    )  # fmt: skip

    def consumer(
        stream: str, handler: Handler, *, start_id: str = "0",
        handled_ttl_s: int | None = 86_400, batch_size: int = 16, max_deliveries: int = 5,
        at_most_once: bool = False, read_interval_ms: int = 0,
    ) -> StreamConsumer:  # fmt: skip
        options = ConsumerSettings(
            stream=stream, group=GROUP, consumer=settings.risk_consumer, start_id=start_id,
            handled_ttl_s=handled_ttl_s, batch_size=batch_size, max_deliveries=max_deliveries,
            outbox_maxlen=settings.risk_stream_maxlen, at_most_once=at_most_once,
            read_interval_ms=read_interval_ms,
        )  # fmt: skip
        return StreamConsumer(redis, options, handler, keys=keys)

    verifier = ControlTokenVerifier(
        settings.control_api_token, redis, used_key_prefix=f"{keys.prefix}risk:control:used:"
    )
    workers: list[Worker] = [
        Supervisor(service, settings.risk_supervise_interval_s),
        # no handled markers: a proposal decided before is refused by the decision's key in
        # Postgres, in the same round trip as the decision (see RiskService.on_proposal)
        consumer(TradeProposed.STREAM, service.on_proposal, handled_ttl_s=None),
        # a lost IntentFinished would hold its intent open for good: reports are retried
        # through any outage (every claim_min_idle_ms) rather than dead-lettered after five
        consumer(OrderFilled.STREAM, service.on_report, max_deliveries=1_000_000),
        # a tick is superseded by the next: one lost at a crash, or failed, is not retried
        consumer(
            TickUpdated.STREAM,
            service.on_tick,
            start_id="$",
            handled_ttl_s=None,
            batch_size=256,
            at_most_once=True,
            read_interval_ms=settings.risk_tick_read_interval_ms,
        ),
    ]

    async def restored() -> bool:
        return service.restored

    async def close() -> None:
        await redis.aclose()
        await service.store.close()
        await database.dispose()

    app = create_app(
        settings,
        workers=workers,
        readiness={
            "redis": redis_ready(redis),
            "postgres": postgres_ready(database),
            "restored": restored,
        },
        on_shutdown=[close],
        routers=[control_router(service, verifier)],
    )
    app.state.risk = service
    return app
