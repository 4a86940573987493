"""The rate-limiter service as a process, and the client every exchange caller uses."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from deploy.local.servers import HarnessError, RedisServer, free_port, redis_binary
from shared.config import load_config
from shared.ratelimit import RateLimitClient, RateLimitedTransport, RateLimitExceeded
from tests.e2e.process import ROOT, ServiceProcess
from tests.support.polling import eventually, metric


@pytest.fixture
def limiter_env(redis_url, bus_keys) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "BUS_PREFIX": bus_keys.prefix,
        "CONFIG_DIR": str(ROOT / "config"),
    }


async def _service(processes: list[ServiceProcess], env: dict[str, str]) -> ServiceProcess:
    service = ServiceProcess("services.rate_limiter", env).start()
    processes.append(service)
    await service.wait_ready()
    return service


async def test_tokens_feedback_and_channels_over_http(limiter_env, processes):
    service = await _service(processes, limiter_env)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as http:
        first = (await http.post("/v1/tokens", json={"channel": "private", "cost": 10})).json()
        assert first == {"channel": "private", "cost": 10, "granted": True, "wait_s": 0.0}
        queued = (
            await http.post("/v1/tokens", json={"channel": "private", "max_wait_s": 1})
        ).json()
        assert queued["granted"] and 0 < queued["wait_s"] <= 1 / 15 + 0.01
        refused = await http.post("/v1/tokens", json={"channel": "private", "cost": 10,
                                                      "max_wait_s": 0})  # fmt: skip
        assert refused.json()["granted"] is False
        held = await http.post("/v1/feedback", json={"channel": "public", "retry_after_s": 3})
        assert held.status_code == 200
        after_429 = (
            await http.post("/v1/tokens", json={"channel": "public", "max_wait_s": 10})
        ).json()
        assert after_429["granted"] and after_429["wait_s"] >= 3.0
        channels = (await http.get("/v1/channels")).json()
        assert [c["channel"] for c in channels] == ["private", "public", "websocket"]
        assert channels[0]["rate_per_s"] == 15 and channels[0]["burst"] == 10
        metrics = (await http.get("/metrics")).text
        assert 'ratelimit_tokens_granted_total{channel="private"} 11.0' in metrics

        async def utilization_exported() -> bool:
            text = (await http.get("/metrics")).text
            sample = 'ratelimit_utilization_ratio{channel="private",window="60s"} '
            values = [float(line[len(sample) :]) for line in text.splitlines()
                      if line.startswith(sample)]  # fmt: skip
            return values == [pytest.approx(11 / (15 * 60))]

        # 10 + 1 private tokens, exported on its own schedule: 11 / (15 * 60)
        await eventually(utilization_exported, within=5, what="utilization in /metrics")
        assert 'ratelimit_429_reported_total{channel="public"} 1.0' in metrics


BAD_REQUESTS = [
    ({"channel": "futures"}, 404, "unknown channel 'futures'; known: private, public"),
    ({"channel": "public", "cost": 0}, 422, "greater than or equal to 1"),
    ({"channel": "public", "cost": -3}, 422, "greater than or equal to 1"),
    ({"channel": "public", "cost": 10**9}, 422, "less than or equal to 1000"),
    ({"channel": "private", "cost": 11}, 422, "exceeds the private burst of 10"),
    ({"channel": "public", "max_wait_s": -1}, 422, "max_wait_s"),
    ({"channel": "public", "surprise": 1}, 422, "surprise"),
    ({"cost": 1}, 422, "channel"),
]


async def test_bad_requests_get_a_4xx_that_says_why(limiter_env, processes):
    service = await _service(processes, limiter_env)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as http:
        for body, status, words in BAD_REQUESTS:
            response = await http.post("/v1/tokens", json=body)
            assert response.status_code == status and words in response.text, body
        garbage = await http.post(
            "/v1/tokens", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert garbage.status_code == 422
        feedback = await http.post("/v1/feedback", json={"channel": "public", "status": 500})
        assert feedback.status_code == 422


async def test_redis_down_means_503_then_recovery(processes, bus_keys):
    try:
        own = RedisServer(redis_binary()).start()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        env = {"REDIS_URL": own.url, "BUS_PREFIX": bus_keys.prefix,
               "CONFIG_DIR": str(ROOT / "config")}  # fmt: skip
        service = await _service(processes, env)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as http:
            own.kill()
            down = await http.post("/v1/tokens", json={"channel": "public"})
            assert down.status_code == 503 and "fallback" in down.text
            client = RateLimitClient(http, load_config(ROOT / "config").ratelimits)
            await client.acquire("private", 1, max_wait_s=1)  # decided locally, after the 503
            assert client.in_fallback
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            own.start()

            async def recovered() -> bool:
                response = await http.post("/v1/tokens", json={"channel": "public"})
                return response.status_code == 200

            await eventually(recovered, within=15, what="the service to recover")
        service.signal(signal.SIGTERM)
        assert service.wait_exit() == 0
    finally:
        own.stop()


class _Venue:
    """A stand-in exchange behind the transport: records calls, answers 429 once."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if len(self.paths) == 3:
            return httpx.Response(429, headers={"retry-after": "2"}, text="<html>slow down</html>")
        return httpx.Response(200, json={"ok": True})


async def test_every_request_through_the_transport_takes_a_token_and_reports_429s(
    limiter_env, processes
):
    service = await _service(processes, limiter_env)
    config = load_config(ROOT / "config").ratelimits
    venue = _Venue()
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as limiter_http:
        limiter = RateLimitClient(limiter_http, config)
        transport = RateLimitedTransport(httpx.MockTransport(venue), limiter)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://api.coinbase.com"
        ) as cb:
            for path in ("market/products", "accounts", "accounts", "market/products"):
                await cb.get(f"/api/v3/brokerage/{path}")
        metrics = (await limiter_http.get("/metrics")).text
        after = (await limiter_http.post("/v1/tokens", json={"channel": "private",
                                                             "max_wait_s": 10})).json()  # fmt: skip
    assert len(venue.paths) == 4
    assert 'ratelimit_tokens_granted_total{channel="public"} 2.0' in metrics
    assert 'ratelimit_tokens_granted_total{channel="private"} 2.0' in metrics
    assert 'ratelimit_429_reported_total{channel="private"} 1.0' in metrics
    assert after["wait_s"] >= 1.5  # the 429's Retry-After holds the shared budget back


async def test_an_unreachable_service_means_a_local_bucket_not_unthrottled_sends():
    config = load_config(ROOT / "config").ratelimits
    dead = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(base_url=dead, timeout=0.5) as http:
        limiter = RateLimitClient(http, config, fallback_fraction=0.5)
        waits = [(await limiter.acquire("private", 1, max_wait_s=0)).wait_s for _ in range(5)]
        assert limiter.in_fallback and metric("ratelimit_client_fallback") == 1
        with pytest.raises(RateLimitExceeded) as refused:
            await limiter.acquire("private", 1, max_wait_s=0)
    assert waits == [0.0] * 5  # half the private burst of 10
    assert refused.value.wait_s == pytest.approx(1 / 7.5, abs=0.01)  # half the rate of 15/s


async def test_a_429_voids_grants_already_waiting_in_the_same_process():
    config = load_config(ROOT / "config").ratelimits
    dead = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(base_url=dead, timeout=0.5) as http:
        limiter = RateLimitClient(http, config, fallback_fraction=1.0)
        for _ in range(10):  # the whole private burst
            await limiter.acquire("private", 1, max_wait_s=0)
        queued = asyncio.create_task(limiter.acquire("private", 1, max_wait_s=5))
        await asyncio.sleep(0)  # it now waits about 1/15 s for its token
        loop = asyncio.get_running_loop()
        started = loop.time()
        await limiter.report_429("private", retry_after_s=0.5)
        await queued
        assert loop.time() - started >= 0.5  # it sat out the hold instead of sending
