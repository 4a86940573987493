"""The reservation algorithm (GCRA, "virtual scheduling"), shared by Redis and local limiters.

State is one number per channel, ``tat``: the time at which the bucket would be full again
if nothing more were taken. A reservation of ``cost`` tokens at ``now``:

    new_tat = max(tat, now) + cost * interval          (interval = 1 / rate)
    send_at = max(now, new_tat - burst * interval)     (when the tokens exist)
    wait    = send_at - now

If ``wait`` exceeds the caller's maximum, nothing changes and the request is refused;
otherwise ``tat = new_tat`` and the caller sends at ``send_at``. Because ``tat`` only
grows, reservations are served in the order they were made, and in any window of length
W at most ``burst + W * rate`` tokens are used.

A 429 from the venue empties the bucket until the venue's reset time:
``tat = max(tat, reset_at + burst * interval)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Decision", "LocalLimiter", "interval_us", "reserve"]


def interval_us(rate_per_s: float) -> int:
    """Microseconds per token, rounded up so the rate is never exceeded by rounding."""
    return max(1, math.ceil(1_000_000 / rate_per_s))


@dataclass(frozen=True)
class Decision:
    granted: bool
    wait_s: float
    """Granted: how long to wait before sending. Refused: how long it would have taken."""
    send_at_s: float | None = None
    """When granted by the shared limiter: the send time on Redis's clock (UNIX seconds)."""


def reserve(
    tat_us: int, now_us: int, cost: int, interval_us: int, burst: int, max_wait_us: int
) -> tuple[bool, int, int]:
    """(granted, wait_us, new_tat_us) for one reservation; pure integer arithmetic."""
    new_tat = max(tat_us, now_us) + cost * interval_us
    send_at = max(now_us, new_tat - burst * interval_us)
    wait = send_at - now_us
    if wait > max_wait_us:
        return False, wait, tat_us
    return True, wait, new_tat


class LocalLimiter:
    """One process's own bucket: the client's fallback when the service is unreachable."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.interval_us = interval_us(rate_per_s)
        self.burst = burst
        self._tat_us = 0

    def reserve(self, now_us: int, cost: int, max_wait_s: float) -> Decision:
        granted, wait_us, self._tat_us = reserve(
            self._tat_us, now_us, cost, self.interval_us, self.burst, round(max_wait_s * 1e6)
        )
        return Decision(granted, wait_us / 1e6)

    def hold_until(self, reset_us: int) -> None:
        self._tat_us = max(self._tat_us, reset_us + self.burst * self.interval_us)
