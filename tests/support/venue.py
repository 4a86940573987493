"""exchange-sim and the rate limiter served on real sockets for tests, plus a CDP test key.

``serving(app)`` runs an ASGI app under uvicorn on 127.0.0.1 with a free port, inside
the test's event loop, so the client under test talks real HTTP and WebSocket to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from services.exchange_sim.app import ExchangeSimSettings, bootstrap
from services.exchange_sim.venue import Venue
from services.rate_limiter.app import RateLimiterSettings
from services.rate_limiter.app import bootstrap as rate_limiter_app
from shared.clock import Clock, LiveClock
from shared.coinbase.auth import CdpCredentials, new_private_key_pem
from shared.coinbase.rest import CoinbaseRest
from shared.coinbase.transport import create_rest_http
from shared.config import load_config
from shared.ratelimit import RateLimitClient

__all__ = [
    "SimHandle",
    "CdpTestKey",
    "coinbase_client",
    "rate_limiter",
    "rate_limiter_service",
    "running_sim",
    "serving",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@dataclass(frozen=True)
class CdpTestKey:
    """A CDP key made for one test run: the private PEM for the client, the public for the sim."""

    name: str
    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls, key_id: str = "test-key") -> CdpTestKey:
        name, private = f"organizations/test-org/apiKeys/{key_id}", new_private_key_pem()
        return cls(name, private, CdpCredentials.parse(name, private).public_pem())

    def credentials(self) -> CdpCredentials:
        return CdpCredentials.parse(self.name, self.private_pem)


@contextlib.asynccontextmanager
async def serving(
    app: FastAPI, *, ssl_certfile: Path | None = None, ssl_keyfile: Path | None = None
) -> AsyncIterator[int]:
    """Serve ``app`` until the block ends; yields the port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@dataclass
class SimHandle:
    base_url: str
    ws_url: str
    app: FastAPI
    admin: httpx.AsyncClient

    @property
    def venue(self) -> Venue:
        venue: Venue = self.app.state.venue
        return venue

    async def faults(self, **faults: Any) -> None:
        response = await self.admin.put("/sim/faults", json=faults)
        response.raise_for_status()


@contextlib.asynccontextmanager
async def running_sim(
    key: CdpTestKey | None = None, *, scheme: str = "http",
    ssl_context: ssl.SSLContext | None = None, ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None, clock: Clock | None = None, **settings: Any,
) -> AsyncIterator[SimHandle]:  # fmt: skip
    """exchange-sim with two products, little history and fast steps, unless told otherwise."""
    defaults: dict[str, Any] = {
        "sim_products": "BTC-USD,ETH-USD",
        "sim_history_minutes": 120,
        "sim_step_ms": 50,
        "sim_api_keys": {key.name: key.public_pem} if key else {},
    }
    app = bootstrap(ExchangeSimSettings(**{**defaults, **settings}), clock=clock)
    async with serving(app, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile) as port:
        base_url = f"{scheme}://127.0.0.1:{port}"
        ws_scheme = "wss" if scheme == "https" else "ws"
        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        async with httpx.AsyncClient(base_url=base_url, timeout=10, verify=verify) as admin:
            yield SimHandle(base_url, f"{ws_scheme}://127.0.0.1:{port}/ws", app, admin)


@contextlib.asynccontextmanager
async def rate_limiter_service(redis_url: str, prefix: str) -> AsyncIterator[str]:
    """The real rate-limiter service with the project's budgets; yields its URL."""
    settings = RateLimiterSettings(config_dir=CONFIG_DIR, bus_prefix=prefix, redis_url=redis_url)
    async with serving(rate_limiter_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def rate_limiter(redis_url: str, prefix: str) -> AsyncIterator[RateLimitClient]:
    """A client of a freshly started rate-limiter service."""
    async with rate_limiter_service(redis_url, prefix) as url:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            yield RateLimitClient(http, load_config(CONFIG_DIR).ratelimits)


@contextlib.asynccontextmanager
async def coinbase_client(
    base_url: str, limiter: RateLimitClient, key: CdpTestKey | None, **options: Any
) -> AsyncIterator[CoinbaseRest]:
    timeout_s = options.pop("timeout_s", 5.0)
    http = create_rest_http(base_url, limiter, timeout_s=timeout_s)
    async with http:
        yield CoinbaseRest(
            http, credentials=key.credentials() if key else None, clock=LiveClock(), **options
        )
