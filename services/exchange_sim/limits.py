"""Coinbase's request limits, enforced per one-second window.

Private endpoints count per API key, public ones per client IP, WebSocket connects and
subscribe messages per IP. A request over the limit gets 429; every answer carries
``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (UNIX seconds
at which the current window ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WindowLimiter", "WindowVerdict"]


@dataclass(frozen=True)
class WindowVerdict:
    allowed: bool
    limit: int
    remaining: int
    reset_unix_s: int

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset_unix_s),
        }


class WindowLimiter:
    """At most ``limit`` requests per identity in each whole UNIX second."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a limit must allow at least one request per second")
        self.limit = limit
        self._counts: dict[str, tuple[int, int]] = {}

    def check(self, identity: str, now_unix_s: float) -> WindowVerdict:
        window = math.floor(now_unix_s)
        start, count = self._counts.get(identity, (window, 0))
        if start != window:
            count = 0
            if len(self._counts) > 10_000:  # forget idle identities
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        allowed = count < self.limit
        if allowed:
            count += 1
        self._counts[identity] = (window, count)
        return WindowVerdict(allowed, self.limit, self.limit - count, window + 1)
