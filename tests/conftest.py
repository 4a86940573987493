"""Fixtures for every tier: a real Redis and a real Postgres, isolated per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import psycopg
import pytest
from hypothesis import settings
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy.local.servers import (
    HarnessError,
    PostgresServer,
    postgres_binaries,
    resolve_postgres,
    resolve_redis,
)
from shared.bus import BusKeys, create_redis
from shared.db import make_engine, upgrade

# CI replays the same examples every run, so a red build is reproducible; locally each run
# explores new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


class Stoppable(Protocol):
    def stop(self) -> None: ...


def _server(resolve: Callable[[], tuple[str, Stoppable | None]]) -> Iterator[str]:
    """The URL of a real server, stopping it afterwards if the harness started it."""
    try:
        url, server = resolve()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield url
    if server:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _server(resolve_redis)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    yield from _server(resolve_postgres)


@pytest.fixture
def bus_keys() -> BusKeys:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    return BusKeys(prefix=f"test-{uuid.uuid4().hex[:12]}:")


@pytest.fixture
async def redis(redis_url: str, bus_keys: BusKeys) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{bus_keys.prefix}*", count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A schema of this test's own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'create schema "{schema}"')
    yield schema
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'drop schema "{schema}" cascade')


@pytest.fixture
def pg_url(database_url: str, pg_schema: str) -> str:
    """A URL whose connections see only this test's schema (for Alembic and subprocesses)."""
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}options=-csearch_path%3D{pg_schema}"


@pytest.fixture
async def pg_engine(database_url: str, pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An async engine whose connections see only this test's schema."""
    engine = make_engine(database_url, connect_args={"options": f"-csearch_path={pg_schema}"})
    yield engine
    await engine.dispose()


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresServer]:
    """A Postgres server of this test's own, migrated, that it may stop and start again
    (``halt``, ``resume``): an outage without touching the server other tests share."""
    try:
        initdb, pg_ctl = postgres_binaries()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = await asyncio.to_thread(PostgresServer(initdb, pg_ctl).start)
    try:
        await asyncio.to_thread(upgrade, server.url)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def closing() -> AsyncIterator[contextlib.AsyncExitStack]:
    """Callbacks run after the test, pass or fail, before the fixtures it came after
    (``pg_engine``) are torn down: e.g. a store's ``close``."""
    async with contextlib.AsyncExitStack() as stack:
        yield stack
