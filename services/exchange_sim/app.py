"""exchange-sim's composition root: settings, the venue, the market driver and the routes.

``bootstrap(settings)`` builds everything from settings; tests and ``__main__`` both call
it. The market driver moves the venue every ``SIM_STEP_MS`` and fans the changes out to
WebSocket subscribers; ``/sim/...`` routes (never Coinbase paths) let tests inject faults.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI, WebSocket
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.exchange_sim.auth import JwtVerifier, load_public_keys
from services.exchange_sim.catalog import ListedProduct, listed
from services.exchange_sim.context import SimContext
from services.exchange_sim.faults import FaultPlan, Faults
from services.exchange_sim.history import history_candles
from services.exchange_sim.limits import WindowLimiter
from services.exchange_sim.market import (
    MarketSource,
    MarketStep,
    Print,
    ReplayMarket,
    SyntheticMarket,
)
from services.exchange_sim.rest import install_guard, market_router
from services.exchange_sim.venue import Venue
from services.exchange_sim.ws import WsHub
from shared.aio import pause_unless_stopped
from shared.candle_files import Candle, load_candles
from shared.clock import Clock
from shared.logging import get_logger
from shared.matching.types import FeeRates
from shared.service import create_app
from shared.settings import ServiceSettings

__all__ = ["ExchangeSimSettings", "MarketDriver", "ShiftedReplay", "bootstrap", "build_venue"]

_log = get_logger("exchange_sim")


class ExchangeSimSettings(ServiceSettings):
    # compose passes unset variables as "": read them as absent, not as empty values.
    model_config = SettingsConfigDict(env_ignore_empty=True)

    service_name: str = "exchange-sim"
    http_port: int = 8060
    sim_products: str = Field(default="", description="Comma-separated; empty lists all.")
    sim_seed: int = 7
    sim_step_ms: int = Field(default=250, ge=10, le=10_000)
    sim_replay_dir: Path | None = Field(
        default=None, description="Replay <PRODUCT>.csv or .parquet candles found here."
    )
    sim_replay_speed: float = Field(default=1.0, gt=0, le=10_000)
    sim_history_minutes: int = Field(default=2 * 24 * 60, ge=0, le=30 * 24 * 60)
    sim_replay_warmup_candles: int = Field(
        default=0, ge=0, le=10_000,
        description="The first candles of each replay file are history before the start "
        "(served to candle backfill, so strategies start warm), not replayed.",
    )  # fmt: skip
    sim_public_rate_per_s: int = Field(default=10, ge=1)
    sim_private_rate_per_s: int = Field(default=30, ge=1)
    sim_ws_rate_per_s: int = Field(default=8, ge=1)
    sim_api_keys: dict[str, str] = Field(
        default_factory=dict, description="JSON: CDP key name -> PEM public key."
    )
    sim_balances: dict[str, Decimal] = Field(default_factory=lambda: {"USD": Decimal(100_000)})
    sim_maker_fee_rate: Decimal = Decimal("0.006")
    sim_taker_fee_rate: Decimal = Decimal("0.012")
    sim_sequence_scope: Literal["connection", "product"] = "connection"
    sim_subscribe_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _warmup_at_replay_speed(self) -> ExchangeSimSettings:
        if self.sim_replay_warmup_candles and self.sim_replay_speed != 1:
            # history candles keep their length; a faster replay's would not match them
            raise ValueError("SIM_REPLAY_WARMUP_CANDLES needs SIM_REPLAY_SPEED 1 (use CLOCK_SPEED)")
        return self

    def product_ids(self) -> list[str] | None:
        ids = [p.strip() for p in self.sim_products.split(",") if p.strip()]
        return ids or None


class ShiftedReplay:
    """A replay played from ``started`` at ``speed``: its prints carry wall-clock times."""

    def __init__(self, replay: ReplayMarket, started: datetime, speed: float) -> None:
        self.profile = replay.profile
        self._replay = replay
        self._started = started
        self._speed = speed

    def advance(self, now: datetime) -> MarketStep:
        history = self._replay.first_time + (now - self._started) * self._speed
        step = self._replay.advance(history)
        prints = [
            Print(self._wall(p.time), p.price, p.size, p.side) for p in step.prints
        ]  # fmt: skip
        return MarketStep(time=now, bids=step.bids, asks=step.asks, prints=prints)

    def _wall(self, moment: datetime) -> datetime:
        return self._started + (moment - self._replay.first_time) / self._speed


def _sources(
    settings: ExchangeSimSettings, products: dict[str, ListedProduct], start: datetime
) -> tuple[dict[str, MarketSource], dict[str, list[Candle]]]:
    """Each product's market, and the history served before ``start`` (replays only)."""
    sources: dict[str, MarketSource] = {}
    histories: dict[str, list[Candle]] = {}
    warmup = settings.sim_replay_warmup_candles
    for index, (product_id, listing) in enumerate(products.items()):
        seed = settings.sim_seed * 1000 + index
        if settings.sim_replay_dir is None:
            sources[product_id] = SyntheticMarket(listing.profile, seed, start)
            continue
        path = _replay_file(settings.sim_replay_dir, product_id)
        candles = load_candles(path)
        if len(candles) < warmup + 2:
            raise ValueError(f"{path}: a replay needs at least two candles after the warm-up")
        granularity_s = candles[1].start - candles[0].start
        replay = ReplayMarket(listing.profile, candles[warmup:], granularity_s, seed)
        sources[product_id] = ShiftedReplay(replay, start, settings.sim_replay_speed)
        # the warm-up candles end with the bucket before the one the replay starts in
        first = int(start.timestamp()) // granularity_s * granularity_s - warmup * granularity_s
        histories[product_id] = [
            replace(candle, start=first + i * granularity_s)
            for i, candle in enumerate(candles[:warmup])
        ]
    return sources, histories


def _replay_file(directory: Path, product_id: str) -> Path:
    for suffix in (".parquet", ".csv"):
        path = directory / f"{product_id}{suffix}"
        if path.exists():
            return path
    raise ValueError(f"no {product_id}.parquet or {product_id}.csv in {directory}")


def build_venue(settings: ExchangeSimSettings, start: datetime) -> Venue:
    """The venue at ``start``: products, markets, history for candle backfill, balances."""
    products = listed(settings.product_ids())
    sources, histories = _sources(settings, products, start)
    venue = Venue(
        products,
        sources,
        fees=FeeRates(maker=settings.sim_maker_fee_rate, taker=settings.sim_taker_fee_rate),
        balances=settings.sim_balances,
        seed=settings.sim_seed,
    )
    if settings.sim_replay_dir is None and settings.sim_history_minutes:
        end = start - timedelta(seconds=start.second, microseconds=start.microsecond)
        for index, (product_id, listing) in enumerate(products.items()):
            venue.candles[product_id].extend(
                history_candles(
                    listing.profile,
                    settings.sim_seed * 1000 + index,
                    end,
                    settings.sim_history_minutes,
                )  # fmt: skip
            )
    for product_id, history in histories.items():
        venue.candles[product_id].extend(history)
    venue.step(start)
    venue.take_events()
    return venue


class MarketDriver:
    """Moves the venue every step and fans out what changed; heartbeats once a second."""

    def __init__(self, venue: Venue, hub: WsHub, clock: Clock, step_s: float) -> None:
        self._venue = venue
        self._hub = hub
        self._clock = clock
        self._step_s = step_s
        self._stop = asyncio.Event()
        self._last_tick = venue.time
        self.steps = 0

    async def run(self) -> None:
        while not self._stop.is_set():
            self.step()
            await pause_unless_stopped(self._stop, self._step_s)

    def step(self) -> None:
        """One move: the venue to now (never back), what changed out, heartbeats if due."""
        now = max(self._clock.now(), self._venue.time)
        self._venue.step(now)
        self._hub.publish(self._venue.take_events(), now)
        if now - self._last_tick >= timedelta(seconds=1):
            self._hub.tick()
            self._last_tick = now
        self.steps += 1

    def stop(self) -> None:
        self._stop.set()


def _admin_router(context: SimContext, hub: WsHub) -> APIRouter:
    router = APIRouter(prefix="/sim", tags=["simulator control"])

    @router.get("/faults")
    async def get_faults() -> Faults:
        return context.faults.faults

    @router.put("/faults")
    async def put_faults(faults: Faults) -> Faults:
        """Replace the injected faults (everything not given goes back to no fault)."""
        context.faults.replace(faults)
        _log.info("faults changed", faults=faults.model_dump())
        return faults

    @router.post("/ws/disconnect")
    async def disconnect() -> dict[str, int]:
        """Drop every WebSocket connection now."""
        return {"disconnected": hub.disconnect_all()}

    return router


def bootstrap(settings: ExchangeSimSettings, clock: Clock | None = None) -> FastAPI:
    clock = clock or settings.clock()
    venue = build_venue(settings, clock.now())
    verifier = JwtVerifier(load_public_keys(settings.sim_api_keys))
    faults = FaultPlan(seed=settings.sim_seed)
    context = SimContext(
        venue=venue,
        clock=clock,
        faults=faults,
        verifier=verifier,
        public_limit=WindowLimiter(settings.sim_public_rate_per_s),
        private_limit=WindowLimiter(settings.sim_private_rate_per_s),
    )
    hub = WsHub(
        venue, clock, faults, verifier,
        connect_limit=WindowLimiter(settings.sim_ws_rate_per_s),
        scope=settings.sim_sequence_scope,
        subscribe_timeout_s=settings.sim_subscribe_timeout_s,
    )  # fmt: skip
    driver = MarketDriver(venue, hub, clock, settings.sim_step_ms / 1000)
    app = create_app(
        settings, workers=[driver], routers=[market_router(context), _admin_router(context, hub)]
    )
    install_guard(app, context)

    @app.websocket("/ws")
    async def websocket(socket: WebSocket) -> None:
        await hub.serve(socket)

    app.state.venue = venue
    app.state.hub = hub
    app.state.driver = driver
    return app
