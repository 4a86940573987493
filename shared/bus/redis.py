"""Creating the Redis client every service uses for the bus."""

from __future__ import annotations

from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

__all__ = ["create_redis"]


def create_redis(url: str | SecretStr) -> Redis:
    """A client sized for blocking stream reads, retrying a command on a dropped connection.

    Retrying is safe for the bus: a retried XADD that had in fact reached Redis leaves a
    second entry with the same envelope id, which deduplicating consumers skip; a retried
    commit script finds its own marker and only acks (with deduplication on).
    """
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    return Redis.from_url(
        raw,
        socket_connect_timeout=5,
        socket_timeout=15,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries=3),
    )
