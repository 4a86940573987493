"""Rate limiting: the reservation algorithm, the shared Redis limiter, and the client."""

from shared.ratelimit.client import (
    RateLimitClient,
    RateLimitedTransport,
    RateLimitError,
    RateLimitExceeded,
    coinbase_channel,
    retry_after_seconds,
)
from shared.ratelimit.gcra import Decision, LocalLimiter, reserve
from shared.ratelimit.redis_limiter import ChannelUsage, RedisLimiter, UnknownChannel

__all__ = [
    "ChannelUsage",
    "Decision",
    "LocalLimiter",
    "RateLimitClient",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitedTransport",
    "RedisLimiter",
    "UnknownChannel",
    "coinbase_channel",
    "reserve",
    "retry_after_seconds",
]
