"""What every caller of the exchange uses: ask the shared limiter before each request.

:class:`RateLimitedTransport` wraps the transport of the ``httpx.AsyncClient`` that talks
to Coinbase, so no request can leave without a token on the right channel, and a 429 is
reported back. If the rate-limiter service cannot be reached, :class:`RateLimitClient`
falls back to a local bucket at ``fallback_fraction`` of each channel's budget (it never
sends unthrottled), says so in a log line and the ``ratelimit_client_fallback`` gauge, and
tries the service again every ``probe_interval_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from prometheus_client import Counter, Gauge

from shared.config.models import RateLimitsConfig
from shared.logging import get_logger
from shared.ratelimit.gcra import Decision, LocalLimiter

__all__ = [
    "RateLimitClient",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitedTransport",
    "coinbase_channel",
    "retry_after_seconds",
]

_log = get_logger("shared.ratelimit")
FALLBACK = Gauge("ratelimit_client_fallback", "1 while using the local fallback bucket.")
MAX_HOLD_S = 3600.0
FALLBACK_DECISIONS = Counter(
    "ratelimit_client_fallback_decisions_total", "Tokens decided locally.", ["channel"]
)


class RateLimitError(Exception):
    """The limiter rejected the request itself (unknown channel, bad cost)."""


class RateLimitExceeded(RateLimitError):
    """No token within the caller's maximum wait; nothing was consumed."""

    def __init__(self, channel: str, wait_s: float) -> None:
        super().__init__(f"{channel}: next token in {wait_s:.3f}s, beyond the allowed wait")
        self.channel = channel
        self.wait_s = wait_s


class RateLimitClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        config: RateLimitsConfig,
        *,
        fallback_fraction: float = 0.5,
        probe_interval_s: float = 5.0,
    ) -> None:
        """``http`` points at the rate-limiter service (base_url, short timeout)."""
        if not 0 < fallback_fraction <= 1:
            raise ValueError("fallback_fraction must be in (0, 1]")
        self._http = http
        self._local = {
            name: LocalLimiter(
                float(budget.rate_per_s) * fallback_fraction,
                max(1, int(budget.burst * fallback_fraction)),
            )
            for name, budget in (
                ("public", config.public), ("private", config.private),
                ("websocket", config.websocket),
            )
        }  # fmt: skip
        for channel in self._local:  # each series from the start, at zero (see the bus)
            FALLBACK_DECISIONS.labels(channel)
        self._probe_interval_s = probe_interval_s
        self._fallback_since: float | None = None
        self._probing = False
        self._held_until: dict[str, float] = {}

    @property
    def in_fallback(self) -> bool:
        return self._fallback_since is not None

    async def acquire(self, channel: str, cost: int = 1, max_wait_s: float = 10.0) -> Decision:
        """Wait until ``cost`` tokens of ``channel`` are ours; raise if that is too long."""
        while True:
            decision = await self._decide(channel, cost, max_wait_s)
            if not decision.granted:
                raise RateLimitExceeded(channel, decision.wait_s)
            if decision.wait_s > 0:
                await asyncio.sleep(decision.wait_s)
            held_for = self._held_until.get(channel, 0.0) - time.monotonic()
            if held_for <= 0:
                return decision
            # A 429 arrived while this grant waited: it is void; sit out the hold, ask again.
            await asyncio.sleep(held_for)

    async def report_429(self, channel: str, retry_after_s: float) -> None:
        """Hold ``channel`` back here at once, and tell the shared limiter."""
        retry_after_s = min(max(retry_after_s, 0.0), MAX_HOLD_S)
        until = time.monotonic() + retry_after_s
        self._held_until[channel] = max(self._held_until.get(channel, 0.0), until)
        self._local[channel].hold_until(_now_us() + round(retry_after_s * 1e6))
        try:
            response = await self._http.post(
                "/v1/feedback", json={"channel": channel, "retry_after_s": retry_after_s}
            )
        except httpx.TransportError as exc:
            _log.warning("could not report a 429 to the rate limiter", error=str(exc))
            return
        if response.status_code != 200:
            _log.warning(
                "the rate limiter did not take a 429 report",
                status=response.status_code,
                body=response.text[:200],
            )

    async def _decide(self, channel: str, cost: int, max_wait_s: float) -> Decision:
        if channel not in self._local:
            raise RateLimitError(f"unknown channel {channel!r}")
        if self._may_ask_service():
            decision = await self._ask_service(channel, cost, max_wait_s)
            if decision is not None:
                return decision
        FALLBACK_DECISIONS.labels(channel).inc(cost)
        return self._local[channel].reserve(_now_us(), cost, max_wait_s)

    async def _ask_service(self, channel: str, cost: int, max_wait_s: float) -> Decision | None:
        """The service's decision, or None after switching to the local fallback."""
        probing = self.in_fallback
        self._probing = probing
        try:
            response = await self._http.post(
                "/v1/tokens", json={"channel": channel, "cost": cost, "max_wait_s": max_wait_s}
            )
            if response.status_code == 422:  # our request is wrong: no fallback hides that
                raise RateLimitError(f"rate limiter refused the request: {response.text}")
            if response.status_code != 200:
                self._enter_fallback(f"HTTP {response.status_code}")
                return None
            body = response.json()
            decision = Decision(bool(body["granted"]), float(body["wait_s"]))
        except (httpx.TransportError, ValueError, KeyError, TypeError) as exc:
            self._enter_fallback(f"{type(exc).__name__}: {exc}")
            return None
        finally:
            if probing:
                self._probing = False
        self._leave_fallback()
        return decision

    def _may_ask_service(self) -> bool:
        """Outside fallback always; in fallback, one probe at a time every probe interval."""
        if self._fallback_since is None:
            return True
        due = time.monotonic() - self._fallback_since >= self._probe_interval_s
        return due and not self._probing

    def _enter_fallback(self, reason: str) -> None:
        if self._fallback_since is None:
            _log.warning("rate limiter unreachable; using the local fallback bucket", error=reason)
        FALLBACK.set(1)
        self._fallback_since = time.monotonic()

    def _leave_fallback(self) -> None:
        if self._fallback_since is not None:
            _log.info("rate limiter reachable again; leaving the local fallback")
            FALLBACK.set(0)
            self._fallback_since = None


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """A transport that takes a token before every request and reports 429s."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        limiter: RateLimitClient,
        *,
        channel_for: Callable[[httpx.Request], str] | None = None,
        max_wait_s: float = 10.0,
    ) -> None:
        self._inner = inner
        self._limiter = limiter
        self._channel_for = channel_for or coinbase_channel
        self._max_wait_s = max_wait_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        channel = self._channel_for(request)
        await self._limiter.acquire(channel, 1, self._max_wait_s)
        response = await self._inner.handle_async_request(request)
        if response.status_code == 429:
            await self._limiter.report_429(channel, retry_after_seconds(response.headers))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def coinbase_channel(request: httpx.Request) -> str:
    """Coinbase's unauthenticated ``/market/`` endpoints are public; the rest are private."""
    return "public" if "/api/v3/brokerage/market/" in request.url.path else "private"


def retry_after_seconds(headers: httpx.Headers, default_s: float = 1.0) -> float:
    """How long a 429 asks us to wait: Retry-After, else x-ratelimit-reset, else a default.

    ``x-ratelimit-reset`` is read as UNIX milliseconds or seconds when it looks like one
    (then the local clock is used), else as seconds from now; the result is capped at an
    hour. The body of a 429 (often HTML) is never parsed.
    """
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return min(max(0.0, float(retry_after)), MAX_HOLD_S)
        except ValueError:
            try:
                moment = parsedate_to_datetime(retry_after)
                return max(0.0, (moment - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return default_s
        if value > 1e12:  # UNIX milliseconds
            value = value / 1000 - time.time()
        elif value > 1e9:  # UNIX seconds
            value -= time.time()
        return min(max(0.0, value), MAX_HOLD_S)
    return default_s


def _now_us() -> int:
    return time.monotonic_ns() // 1000
