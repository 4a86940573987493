"""signal's composition root: candles in, ``signal.proposals`` out.

On start the strategy state is rebuilt from the candles the consumer group already
handled (:mod:`services.signal.rebuild`); only then does the candle consumer run. Each
proposal is published atomically with the ack of the candle that caused it, under an
envelope id equal to its deterministic proposal id: a redelivered candle, or the same
candle read again after a crash, can never publish a second proposal.

Signal does not consume ``md.ticks``: no strategy trades on ticks, and a proposal's
reference mid is its product's latest tick, read when the proposal is made from the
cache market-data keeps beside the stream (:class:`shared.products.LatestTicks`).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.signal.engine import SignalEngine
from services.signal.proposals import actionable, to_proposal
from services.signal.rebuild import begun, candle_of, rebuild_from_stream
from services.signal.strategies import build_strategies
from services.signal.strategies.base import Tick
from shared.aio import pause_unless_stopped
from shared.bus import BusKeys, ConsumerSettings, Delivery, StreamConsumer, create_redis
from shared.clock import Clock
from shared.config import load_config
from shared.logging import get_logger
from shared.messages import CandleClosed, Envelope, Payload, new_envelope
from shared.products import LatestTicks
from shared.service import create_app, redis_ready
from shared.settings import ServiceSettings

__all__ = ["SignalService", "SignalSettings", "bootstrap"]

_log = get_logger("signal")
GROUP = "signal"
PROPOSALS = Counter("signal_proposals_total", "Proposals published.", ["strategy", "action"])
HISTORY = Counter(
    "signal_history_signals_total",
    "Signals from candles published too late to act on (backfill, catch-up): not proposed.",
    ["strategy"],
)


class SignalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True)

    service_name: str = "signal"
    http_port: int = 8020
    config_dir: Path = Path("config")
    signal_consumer: str = Field(
        default="signal-1", description="Stable consumer name: a restart resumes its entries."
    )
    signal_max_candle_lag_s: float = Field(default=60, gt=0)
    signal_tick_max_age_s: float = Field(default=10, gt=0)
    signal_stream_maxlen: int = Field(default=100_000, ge=1000)


class SignalService:
    """The stream handler around the pure :class:`SignalEngine`."""

    def __init__(
        self, engine: SignalEngine, clock: Clock, latest_ticks: LatestTicks, *,
        max_lag_s: float, tick_max_age_s: float,
    ) -> None:  # fmt: skip
        self.engine = engine
        self._clock = clock
        self._latest_ticks = latest_ticks
        self._max_lag_s = max_lag_s
        self._tick_max_age_ns = int(tick_max_age_s * 1e9)

    async def on_candle(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        candle = envelope.data
        if not isinstance(candle, CandleClosed):
            return
        if not begun(candle, self._clock.now()):
            _log.warning(
                "candle refused: its bucket has not begun", product_id=candle.product_id,
                granularity_s=candle.granularity_s, start=candle.start.isoformat(),
            )  # fmt: skip
            return
        signals = self.engine.on_candle(candle.product_id, candle.granularity_s, candle_of(candle))
        if not signals:
            return
        if not actionable(candle, envelope.origin_ts, self._max_lag_s):
            for signal in signals:
                HISTORY.labels(signal.strategy).inc()
            return
        mid = await self._fresh_mid(candle.product_id)  # every signal here is this product's
        for signal in signals:
            reference = signal.reference_price if mid is None else mid
            proposal = to_proposal(signal, reference, self._clock.now())
            delivery.publish(
                new_envelope(
                    proposal,
                    self._clock,
                    origin_ts=envelope.origin_ts,
                    message_id=proposal.proposal_id,
                )  # fmt: skip
            )
            PROPOSALS.labels(signal.strategy, signal.action.value).inc()
            _log.info("proposal", proposal_id=proposal.proposal_id, side=proposal.side.value,
                      reference_mid=str(proposal.reference_mid))  # fmt: skip

    async def _fresh_mid(self, product_id: str) -> Decimal | None:
        """The mid of the product's latest tick if it is fresh: a proposal's reference mid
        (else it is the deciding candle's close)."""
        latest = await self._latest_ticks.get(product_id)
        if latest is None or self._clock.now_ns() - latest.origin_ts > self._tick_max_age_ns:
            return None
        tick = latest.data
        return Tick(tick.product_id, tick.best_bid, tick.best_ask, latest.origin_ts).mid


class RebuildThenConsume:
    """Rebuild the strategies from handled candles, then run the candle consumer."""

    def __init__(
        self, redis: Redis, keys: BusKeys, engine: SignalEngine, consumer: StreamConsumer,
        clock: Clock,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._keys = keys
        self._engine = engine
        self._consumer = consumer
        self._clock = clock
        self._stop = asyncio.Event()
        self.rebuilt = False

    async def run(self) -> None:
        while not self._stop.is_set() and not self.rebuilt:
            try:
                await rebuild_from_stream(
                    self._redis, self._keys, GROUP, self._engine, self._clock.now()
                )
                self.rebuilt = True
            except RedisError as exc:
                _log.warning("rebuild waits for redis", error=f"{type(exc).__name__}: {exc}")
                await pause_unless_stopped(self._stop, 1.0)
        if not self._stop.is_set():
            await self._consumer.run()

    def stop(self) -> None:
        self._stop.set()
        self._consumer.stop()


def bootstrap(
    settings: SignalSettings, *, redis: Redis | None = None, clock: Clock | None = None
) -> FastAPI:
    config = load_config(settings.config_dir)
    clock = clock or settings.clock()
    redis = redis or create_redis(settings.redis_url)
    keys = BusKeys(settings.bus_prefix)
    engine = SignalEngine(build_strategies(config.strategies))
    service = SignalService(
        engine, clock, LatestTicks(redis, keys.prefix),
        max_lag_s=settings.signal_max_candle_lag_s, tick_max_age_s=settings.signal_tick_max_age_s,
    )  # fmt: skip
    candles = StreamConsumer(
        redis,
        ConsumerSettings(
            stream=CandleClosed.STREAM,
            group=GROUP,
            consumer=settings.signal_consumer,
            outbox_maxlen=settings.signal_stream_maxlen,
            # the engine answers a candle seen again with the same signals, or none, and
            # the commit refuses a second publish: no marker lookup before each candle
            check_handled_first=False,
        ),  # fmt: skip
        service.on_candle,
        keys=keys,
    )
    candle_worker = RebuildThenConsume(redis, keys, engine, candles, clock)

    async def rebuilt() -> bool:
        return candle_worker.rebuilt

    async def close() -> None:
        await redis.aclose()

    app = create_app(
        settings,
        workers=[candle_worker],
        readiness={"redis": redis_ready(redis), "rebuilt": rebuilt},
        on_shutdown=[close],
    )
    app.state.signal = service
    return app
