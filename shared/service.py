"""The FastAPI app factory every service uses, and the uvicorn entry point.

Each service gets ``/healthz`` (the process is alive), ``/readyz`` (its checks pass and
its workers run), and ``/metrics`` (Prometheus). The lifespan starts the service's
workers (stream consumers and the like) and, on SIGTERM, asks them to stop, waits for
the message in hand to be finished and acked, then runs the shutdown hooks.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.logging import configure_logging, get_logger, redact_text
from shared.settings import ServiceSettings, SettingsError, load_settings

__all__ = [
    "Hook", "ReadinessCheck", "Worker", "create_app", "postgres_ready", "redis_ready",
    "run_service", "serve",
]  # fmt: skip

_log = get_logger("shared.service")
SERVICE_INFO = Gauge(
    "service_info", "Always 1; labels say which service and mode.", ["service", "mode"]
)

S = TypeVar("S", bound=ServiceSettings)
ReadinessCheck = Callable[[], Awaitable[bool]]
Hook = Callable[[], Awaitable[None]]
READINESS_TIMEOUT_S = 2.0


class Worker(Protocol):
    """A long-running task owned by a service, e.g. a :class:`shared.bus.StreamConsumer`."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def redis_ready(redis: Redis) -> ReadinessCheck:
    """A readiness check that Redis answers PING."""

    async def check() -> bool:
        return bool(await redis.ping())

    return check


def postgres_ready(database: AsyncEngine) -> ReadinessCheck:
    """A readiness check that Postgres answers a query."""

    async def check() -> bool:
        async with database.connect() as connection:
            await connection.execute(text("select 1"))
        return True

    return check


def create_app(
    settings: ServiceSettings,
    *,
    workers: Sequence[Worker] = (),
    readiness: Mapping[str, ReadinessCheck] | None = None,
    on_startup: Iterable[Hook] = (),
    on_shutdown: Iterable[Hook] = (),
    routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """Build the service's app; the caller passes its ports, the factory owns the plumbing."""
    checks = dict(readiness or {})
    startup, shutdown = list(on_startup), list(on_shutdown)
    tasks: dict[str, asyncio.Task[None]] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for hook in startup:
            await hook()
        for index, worker in enumerate(workers):
            name = f"{type(worker).__name__}-{index}"
            tasks[name] = asyncio.create_task(worker.run(), name=name)
        SERVICE_INFO.labels(settings.service_name, settings.trading_mode.value).set(1)
        _log.info("service started", mode=settings.trading_mode.value, workers=len(tasks))
        try:
            yield
        finally:
            await _stop_workers(workers, tasks, settings.shutdown_grace_s)
            for hook in shutdown:
                await hook()
            _log.info("service stopped")

    app = FastAPI(title=settings.service_name, lifespan=lifespan)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up and its event loop answers."""
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        """Every readiness check passes and every worker is running."""
        results = {name: await _run_check(check) for name, check in checks.items()}
        for name, task in tasks.items():
            results[f"worker:{name}"] = "ok" if not task.done() else _task_failure(task)
        ready = all(value == "ok" for value in results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


async def _run_check(check: ReadinessCheck) -> str:
    try:
        ok = await asyncio.wait_for(check(), timeout=READINESS_TIMEOUT_S)
    except TimeoutError:
        return f"timed out after {READINESS_TIMEOUT_S}s"
    except Exception as exc:
        return redact_text(f"{type(exc).__name__}: {exc}")
    return "ok" if ok else "not ready"


def _task_failure(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return redact_text(f"stopped: {type(error).__name__}: {error}") if error else "stopped"


async def _stop_workers(
    workers: Sequence[Worker], tasks: dict[str, asyncio.Task[None]], grace_s: float
) -> None:
    for worker in workers:
        worker.stop()
    if not tasks:
        return
    _done, late = await asyncio.wait(tasks.values(), timeout=grace_s)
    for task in late:
        _log.warning("worker did not stop in time; cancelling", worker=task.get_name())
        task.cancel()
    if late:
        # A cancel can be swallowed inside a library; shutdown must not hang on it.
        _done, stuck = await asyncio.wait(late, timeout=5)
        for task in stuck:
            _log.error("worker ignored cancellation; abandoning it", worker=task.get_name())


def serve(
    app: FastAPI,
    settings: ServiceSettings,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Run ``app`` under uvicorn until SIGTERM or SIGINT, shut down cleanly, exit 0.

    With ``tls_cert`` and ``tls_key`` it serves HTTPS (and WSS) instead of plain HTTP.

    uvicorn re-raises the stop signal into the handler that was installed before it ran,
    once its graceful shutdown is done; a quiet handler there turns a finished shutdown
    into a normal return instead of death by signal.
    """
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _after_shutdown)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    uvicorn.Server(config).run()


def _after_shutdown(signum: int, _frame: object) -> None:
    _log.info("stop signal handled", signal=signal.Signals(signum).name)


def run_service(
    settings_type: type[S],
    bootstrap: Callable[[S], FastAPI],
    *,
    startup_errors: tuple[type[Exception], ...] = (ValueError, OSError),
) -> int:
    """A service's ``main``: settings from the environment, logging, the app, serve.

    Returns 2, with the reason on stderr, when the settings or ``startup_errors`` raised
    by ``bootstrap`` (a bad config, say) mean the service cannot start.
    """
    try:
        settings = load_settings(settings_type)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level, secrets=settings.secrets())
    try:
        app = bootstrap(settings)
    except startup_errors as exc:
        print(f"{settings.service_name} cannot start: {exc}", file=sys.stderr)
        return 2
    serve(app, settings)
    return 0
