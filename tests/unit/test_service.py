import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from shared.service import create_app
from shared.settings import ServiceSettings


class RecordingWorker:
    """A worker that records its lifecycle; stands in for a stream consumer."""

    def __init__(self, fail: bool = False) -> None:
        self.started = False
        self.stopped_cleanly = False
        self._stop = asyncio.Event()
        self._fail = fail

    async def run(self) -> None:
        self.started = True
        if self._fail:
            raise RuntimeError("worker blew up")
        await self._stop.wait()
        self.stopped_cleanly = True

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


def _settings() -> ServiceSettings:
    return ServiceSettings(service_name="unit-svc", shutdown_grace_s=2)


async def _ok() -> bool:
    return True


async def _down() -> bool:
    raise ConnectionError("redis is down")


async def test_health_ready_and_metrics_and_a_clean_stop():
    worker = RecordingWorker()
    events: list[str] = []

    async def started() -> None:
        events.append("startup")

    async def stopped() -> None:
        events.append("shutdown")

    app = create_app(
        _settings(), workers=[worker], readiness={"redis": _ok},
        on_startup=[started], on_shutdown=[stopped],
    )  # fmt: skip
    async with running(app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "service": "unit-svc"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "checks": {"redis": "ok", "worker:RecordingWorker-0": "ok"},
        }
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert 'service_info{mode="PAPER",service="unit-svc"} 1.0' in metrics.text
        assert worker.started
    assert worker.stopped_cleanly
    assert events == ["startup", "shutdown"]


async def test_readiness_fails_with_the_reason_of_each_failing_check():
    app = create_app(_settings(), workers=[RecordingWorker(fail=True)], readiness={"redis": _down})
    async with running(app) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False
        assert body["checks"]["redis"] == "ConnectionError: redis is down"
        assert body["checks"]["worker:RecordingWorker-0"] == "stopped: RuntimeError: worker blew up"
        assert (await client.get("/healthz")).status_code == 200
