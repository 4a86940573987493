"""Token reservations shared by every process, atomic in Redis, on Redis's own clock."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from redis.asyncio import Redis

from shared.config.models import ChannelBudget, RateLimitsConfig
from shared.ratelimit.gcra import Decision, interval_us

__all__ = ["ChannelUsage", "RedisLimiter", "UnknownChannel"]

# KEYS: 1 state hash (tat), 2 usage hash (second -> tokens)
# ARGV: 1 interval_us, 2 burst, 3 cost, 4 max_wait_us
# Returns {granted (0/1), wait_us, now_us}. The arithmetic mirrors shared.ratelimit.gcra.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local new_tat = math.max(tat, now) + cost * interval
local send_at = math.max(now, new_tat - burst * interval)
local wait = send_at - now
if wait > tonumber(ARGV[4]) then
  return {0, wait, now}
end
redis.call('HSET', KEYS[1], 'tat', string.format('%d', new_tat))
-- Usage by the second the tokens are used in. Reads cover the last 60 s and grants are
-- at most 60 s ahead, so a field 121 s old is never needed; an idle key expires.
redis.call('HINCRBY', KEYS[2], math.floor(send_at / 1000000), cost)
redis.call('HDEL', KEYS[2], math.floor(now / 1000000) - 121)
redis.call('EXPIRE', KEYS[2], 300)
return {1, wait, now}
"""

# KEYS: 1 state hash. ARGV: 1 retry_after_us, 2 interval_us, 3 burst. Returns reset_us.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reset = now + tonumber(ARGV[1])
local empty_until = reset + tonumber(ARGV[3]) * tonumber(ARGV[2])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
if empty_until > tat then
  redis.call('HSET', KEYS[1], 'tat', string.format('%d', empty_until))
end
return reset
"""


class UnknownChannel(KeyError):
    """A channel that ratelimits.yaml does not define."""


@dataclass(frozen=True)
class ChannelUsage:
    channel: str
    rate_per_s: Decimal
    burst: int
    used_last_1s: int
    used_last_60s: int

    @property
    def utilization_1s(self) -> float:
        return float(self.used_last_1s / self.rate_per_s)

    @property
    def utilization_60s(self) -> float:
        return float(self.used_last_60s / (self.rate_per_s * 60))


class RedisLimiter:
    """The budget of every channel in ``ratelimits.yaml``, one Lua call per decision."""

    def __init__(self, redis: Redis, config: RateLimitsConfig, *, prefix: str = "") -> None:
        self._redis = redis
        self._prefix = prefix
        self.channels: dict[str, ChannelBudget] = {
            "public": config.public,
            "private": config.private,
            "websocket": config.websocket,
        }
        self._reserve = redis.register_script(_RESERVE)
        self._hold = redis.register_script(_HOLD)

    def budget(self, channel: str) -> ChannelBudget:
        try:
            return self.channels[channel]
        except KeyError:
            raise UnknownChannel(channel) from None

    def _keys(self, channel: str) -> list[str]:
        return [
            f"{self._prefix}ratelimit:{channel}:state",
            f"{self._prefix}ratelimit:{channel}:used",
        ]

    def _interval_us(self, budget: ChannelBudget) -> int:
        return interval_us(float(budget.rate_per_s))

    async def reserve(self, channel: str, cost: int, max_wait_s: float) -> Decision:
        """Reserve ``cost`` tokens, waiting at most ``max_wait_s``; refusals consume nothing."""
        budget = self.budget(channel)
        if cost > budget.burst:
            raise ValueError(f"cost {cost} exceeds the {channel} burst of {budget.burst}")
        granted, wait_us, now_us = await self._reserve(
            keys=self._keys(channel),
            args=[self._interval_us(budget), budget.burst, cost, round(max_wait_s * 1e6)],
        )
        send_at = (int(now_us) + int(wait_us)) / 1e6 if granted else None
        return Decision(bool(granted), int(wait_us) / 1e6, send_at)

    async def hold(self, channel: str, retry_after_s: float) -> float:
        """After a 429: nothing more on ``channel`` until ``retry_after_s`` from now."""
        budget = self.budget(channel)
        reset_us = await self._hold(
            keys=self._keys(channel)[:1],
            args=[round(retry_after_s * 1e6), self._interval_us(budget), budget.burst],
        )
        return int(reset_us) / 1e6

    async def usage(self, channel: str) -> ChannelUsage:
        budget = self.budget(channel)
        seconds, _micro = await self._redis.time()
        fields = [str(second) for second in range(int(seconds) - 60, int(seconds))]
        counts = [
            int(value or 0) for value in await self._redis.hmget(self._keys(channel)[1], fields)
        ]
        return ChannelUsage(channel, budget.rate_per_s, budget.burst, counts[-1], sum(counts))
