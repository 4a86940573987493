"""The shared limiter under load, as real processes.

decisions: 8 processes hammer POST /v1/tokens (max_wait 0) for a few seconds: the most
           decisions per second the service gives on this machine, and the latency at that
           saturation (saturated_p50_ms: mostly queueing).
pacing:    8 caller processes send through RateLimitedTransport to a local venue that
           enforces Coinbase's private limit (30 requests in any second) and answers 429
           beyond it, as fast as the limiter lets them, for 20 s: utilization of the
           configured private budget (steady state, after the first second), 429s, and the
           decision latency a caller sees (p50_ms, p99_ms: time in acquire beyond the wait).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import httpx

from shared.config import load_config
from shared.ratelimit import RateLimitClient, RateLimitedTransport
from tests.e2e.process import ROOT, ServiceProcess

PROCESSES = 8
PACING_SECONDS = 20.0
DECISION_SECONDS = 4.0
VENUE_LIMIT = 30  # Coinbase: private endpoints, 30 requests per second per user


async def _hammer(limiter_url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    body = {"channel": "public", "cost": 1, "max_wait_s": 0}
    async with httpx.AsyncClient(base_url=limiter_url, timeout=5) as http:

        async def loop() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await http.post("/v1/tokens", json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(loop() for _ in range(8)))
    return latencies


async def _send(limiter_url: str, venue_url: str, seconds: float) -> list[tuple[float, int, float]]:
    """(sent at, venue status, decision latency: time in acquire beyond the granted wait)."""
    config = load_config(ROOT / "config").ratelimits
    sends: list[tuple[float, int, float]] = []
    deadline = time.time() + seconds
    async with httpx.AsyncClient(base_url=limiter_url, timeout=5) as limiter_http:
        limiter = _TimedClient(limiter_http, config)
        transport = RateLimitedTransport(httpx.AsyncHTTPTransport(), limiter, max_wait_s=30)
        async with httpx.AsyncClient(transport=transport, base_url=venue_url, timeout=10) as venue:

            async def loop() -> None:
                while time.time() < deadline:
                    response = await venue.post("/api/v3/brokerage/orders", json={})
                    sends.append((time.time(), response.status_code, limiter.last_latency))

            await asyncio.gather(*(loop() for _ in range(2)))
    return sends


class _TimedClient(RateLimitClient):
    """Records how long each acquire took beyond the wait it was granted."""

    last_latency = 0.0

    async def acquire(self, channel: str, cost: int = 1, max_wait_s: float = 10.0):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        decision = await super().acquire(channel, cost, max_wait_s)
        self.last_latency = time.perf_counter() - started - decision.wait_s
        return decision


def _hammer_process(limiter_url: str) -> list[float]:
    return asyncio.run(_hammer(limiter_url, DECISION_SECONDS))


def _send_process(limiter_url: str, venue_url: str) -> list[tuple[float, int, float]]:
    return asyncio.run(_send(limiter_url, venue_url, PACING_SECONDS))


def _fan_out(function, *args: str) -> list:  # type: ignore[no-untyped-def, type-arg]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context) as pool:
        futures = [pool.submit(function, *args) for _ in range(PROCESSES)]
        return [item for future in futures for item in future.result(timeout=300)]


def run(redis_url: str) -> str:
    env = {
        "REDIS_URL": redis_url,
        "BUS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
        "CONFIG_DIR": str(ROOT / "config"),
        "LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess("services.rate_limiter", env).start()
    venue = ServiceProcess("tests.bench.venue", {})
    venue.start_args(["--port", str(venue.port), "--limit", str(VENUE_LIMIT)])
    try:
        asyncio.run(service.wait_ready())
        asyncio.run(venue.wait_http("/stats"))
        latencies = _fan_out(_hammer_process, service.base_url)
        sends = _fan_out(_send_process, service.base_url, venue.base_url)
    finally:
        service.stop()
        venue.stop()
    rate = float(load_config(ROOT / "config").ratelimits.private.rate_per_s)
    start = min(at for at, _, _ in sends)
    steady = [at for at, status, _ in sends if status == 200 and at >= start + 1.0]
    span = max(steady) - (start + 1.0)
    utilization = len(steady) / (rate * span)
    http_429 = sum(1 for _, status, _ in sends if status == 429)
    paced = sorted(latency for at, _, latency in sends if at >= start + 1.0)
    hammered = sorted(latencies)
    return (
        f"BENCH ratelimit decisions_per_s={len(latencies) / DECISION_SECONDS:.0f} "
        f"p50_ms={statistics.median(paced) * 1e3:.2f} "
        f"p99_ms={paced[int(0.99 * len(paced))] * 1e3:.2f} "
        f"utilization={utilization:.3f} http_429={http_429} "
        f"saturated_p50_ms={statistics.median(hammered) * 1e3:.1f} "
        f"callers={PROCESSES} seconds={PACING_SECONDS:.0f} budget_per_s={rate:.0f}"
    )
