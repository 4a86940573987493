"""HTTP shell over :class:`shared.ratelimit.RedisLimiter`: reserve, report 429s, inspect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.aio import pause_unless_stopped
from shared.bus import create_redis
from shared.config import load_config
from shared.logging import get_logger
from shared.ratelimit import RedisLimiter, UnknownChannel
from shared.service import create_app, redis_ready
from shared.settings import ServiceSettings

__all__ = ["RateLimiterSettings", "bootstrap", "expose_channels"]

_log = get_logger("rate_limiter")
GRANTED = Counter("ratelimit_tokens_granted_total", "Tokens granted.", ["channel"])
REFUSED = Counter("ratelimit_tokens_refused_total", "Tokens refused (wait too long).", ["channel"])
WAIT = Histogram(
    "ratelimit_wait_seconds",
    "Wait handed to granted callers before they may send.",
    ["channel"],
    buckets=(0, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
UTILIZATION = Gauge(
    "ratelimit_utilization_ratio", "Tokens used over the budget.", ["channel", "window"]
)
REPORTED_429 = Counter("ratelimit_429_reported_total", "429s callers reported.", ["channel"])
REDIS_ERRORS = Counter("ratelimit_redis_errors_total", "Decisions that failed on Redis.")


def expose_channels(channels: Iterable[str]) -> None:
    """Every channel's series from the start, at zero: ``increase()`` over a counter only
    sees what happens after its first scrape, so the first 429 would otherwise go unseen."""
    for channel in channels:
        for counter in (GRANTED, REFUSED, REPORTED_429):
            counter.labels(channel)
        WAIT.labels(channel)


class RateLimiterSettings(ServiceSettings):
    service_name: str = "rate-limiter"
    http_port: int = 8050
    config_dir: Path = Path("config")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, max_length=32, examples=["private"])
    cost: int = Field(default=1, ge=1, le=1000, description="Tokens wanted (requests).")
    max_wait_s: float = Field(
        default=5.0, ge=0, le=60, allow_inf_nan=False, description="Longest acceptable wait."
    )


class TokenResponse(BaseModel):
    channel: str
    cost: int
    granted: bool
    wait_s: float = Field(
        description="Granted: wait this long, then send. Refused: the wait it would have taken."
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, max_length=32)
    status: int = Field(default=429, ge=429, le=429, description="The venue's status code.")
    retry_after_s: float = Field(
        default=1.0, ge=0, le=3600, allow_inf_nan=False,
        description="Retry-After, or x-ratelimit-reset minus now, as the caller saw it.",
    )  # fmt: skip


class FeedbackResponse(BaseModel):
    channel: str
    held_until_unix_s: float


class ChannelView(BaseModel):
    channel: str
    rate_per_s: float
    burst: int
    utilization_1s: float
    utilization_60s: float


def _known_channel(limiter: RedisLimiter, channel: str) -> None:
    try:
        limiter.budget(channel)
    except UnknownChannel:
        known = ", ".join(sorted(limiter.channels))
        raise HTTPException(404, f"unknown channel {channel!r}; known: {known}") from None


@contextmanager
def _store_errors_as_503() -> Iterator[None]:
    """Redis down: refuse with 503 (callers fall back to their local bucket); stay up."""
    try:
        yield
    except RedisError as exc:
        REDIS_ERRORS.inc()
        _log.warning("redis unavailable; refusing", error=f"{type(exc).__name__}: {exc}")
        raise HTTPException(503, "rate-limit store unavailable; use the local fallback") from None


def _router(limiter: RedisLimiter) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["rate limits"])

    @router.post("/tokens", response_model=TokenResponse)
    async def reserve_tokens(request: TokenRequest) -> TokenResponse:
        """Reserve tokens; the answer says whether, and after what wait, to send."""
        _known_channel(limiter, request.channel)
        try:
            with _store_errors_as_503():
                decision = await limiter.reserve(request.channel, request.cost, request.max_wait_s)
        except ValueError as exc:  # over the burst: a 422 shaped like the schema's others
            error = {"type": "value_error", "loc": ("body", "cost"), "msg": str(exc)}
            raise RequestValidationError([error]) from None
        if decision.granted:
            GRANTED.labels(request.channel).inc(request.cost)
            WAIT.labels(request.channel).observe(decision.wait_s)
        else:
            REFUSED.labels(request.channel).inc(request.cost)
        return TokenResponse(
            channel=request.channel, cost=request.cost, granted=decision.granted,
            wait_s=decision.wait_s,
        )  # fmt: skip

    @router.post("/feedback", response_model=FeedbackResponse)
    async def report_429(request: FeedbackRequest) -> FeedbackResponse:
        """A caller got a 429: hold the channel back until the venue's reset."""
        _known_channel(limiter, request.channel)
        with _store_errors_as_503():
            held_until = await limiter.hold(request.channel, request.retry_after_s)
        REPORTED_429.labels(request.channel).inc()
        _log.warning("429 reported", channel=request.channel, retry_after_s=request.retry_after_s)
        return FeedbackResponse(channel=request.channel, held_until_unix_s=held_until)

    @router.get("/channels", response_model=list[ChannelView])
    async def channels() -> list[ChannelView]:
        """Budget, burst and utilization over the last 1 s and 60 s, per channel."""
        with _store_errors_as_503():
            usages = [await limiter.usage(name) for name in sorted(limiter.channels)]
        for usage in usages:
            UTILIZATION.labels(usage.channel, "1s").set(usage.utilization_1s)
            UTILIZATION.labels(usage.channel, "60s").set(usage.utilization_60s)
        return [
            ChannelView(
                channel=usage.channel,
                rate_per_s=float(usage.rate_per_s),
                burst=usage.burst,
                utilization_1s=usage.utilization_1s,
                utilization_60s=usage.utilization_60s,
            )  # fmt: skip
            for usage in usages
        ]

    return router


class UtilizationReporter:
    """Exports each channel's utilization every ``interval_s`` for Prometheus to scrape."""

    def __init__(self, limiter: RedisLimiter, interval_s: float = 1.0) -> None:
        self._limiter = limiter
        self._interval_s = interval_s
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                for name in sorted(self._limiter.channels):
                    usage = await self._limiter.usage(name)
                    UTILIZATION.labels(name, "1s").set(usage.utilization_1s)
                    UTILIZATION.labels(name, "60s").set(usage.utilization_60s)
            except RedisError:
                REDIS_ERRORS.inc()  # readiness reports it; the next round tries again
            await pause_unless_stopped(self._stop, self._interval_s)

    def stop(self) -> None:
        self._stop.set()


def bootstrap(settings: RateLimiterSettings, redis: Redis | None = None) -> FastAPI:
    """The service's app; the config is validated and loaded before anything is served."""
    config = load_config(settings.config_dir)
    redis = redis or create_redis(settings.redis_url)
    limiter = RedisLimiter(redis, config.ratelimits, prefix=settings.bus_prefix)
    expose_channels(limiter.channels)

    async def close() -> None:
        await redis.aclose()

    return create_app(
        settings,
        workers=[UtilizationReporter(limiter)],
        readiness={"redis": redis_ready(redis)},
        on_shutdown=[close],
        routers=[_router(limiter)],
    )
