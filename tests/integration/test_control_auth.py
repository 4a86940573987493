"""Control API tokens against a real Redis: each is accepted once, by any risk process,
and an unknown first use is never taken for a first use."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from deploy.local.servers import free_port
from services.risk.control_auth import ControlTokenVerifier, Refused, Unavailable, mint_token

SECRET = "integration-control-secret-81f3"


def _verifier(redis: Redis, prefix: str) -> ControlTokenVerifier:
    return ControlTokenVerifier(SecretStr(SECRET), redis, used_key_prefix=f"{prefix}used:")


async def test_a_token_is_used_once_across_processes_and_forgotten_when_it_expires(redis, bus_keys):
    token = mint_token(SECRET, "POST", "/v1/pause", actor="alice", lifetime_s=30)
    first, restarted = _verifier(redis, bus_keys.prefix), _verifier(redis, bus_keys.prefix)
    accepted = await first.verify(token, "POST", "/v1/pause")
    assert accepted.actor == "alice"
    with pytest.raises(Refused, match="already used"):
        await restarted.verify(token, "POST", "/v1/pause")
    remembered = await redis.pttl(f"{bus_keys.prefix}used:{accepted.token_id}")
    assert 30_000 <= remembered <= 35_000  # the token's life and the leeway, no longer


async def test_no_secret_configured_refuses_every_token(redis, bus_keys):
    verifier = ControlTokenVerifier(None, redis, used_key_prefix=f"{bus_keys.prefix}used:")
    with pytest.raises(Refused, match="wrong signature"):
        await verifier.verify(mint_token(SECRET, "GET", "/v1/status"), "GET", "/v1/status")


async def test_redis_down_refuses_to_guess():
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(Unavailable, match="cannot check the token for reuse"):
            await _verifier(dead, "x:").verify(
                mint_token(SECRET, "GET", "/v1/status"), "GET", "/v1/status"
            )
    finally:
        await dead.aclose()
