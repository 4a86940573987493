"""Fixtures shared by the integration tests that talk to exchange-sim."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.bus import BusKeys
from shared.ratelimit import RateLimitClient
from tests.support.venue import CdpTestKey, SimHandle, rate_limiter, running_sim


@pytest.fixture(scope="module")
def key() -> CdpTestKey:
    """A CDP key exchange-sim accepts, made for this module."""
    return CdpTestKey.generate()


@pytest.fixture
async def limiter(redis_url: str, bus_keys: BusKeys) -> AsyncIterator[RateLimitClient]:
    """A client of the real rate-limiter service, on this test's Redis prefix."""
    async with rate_limiter(redis_url, bus_keys.prefix) as client:
        yield client


@pytest.fixture
async def sim(key: CdpTestKey) -> AsyncIterator[SimHandle]:
    """exchange-sim on a real socket, knowing ``key``."""
    async with running_sim(key) as handle:
        yield handle
