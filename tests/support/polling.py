"""Waiting for a condition with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY


async def eventually(
    condition: Callable[[], Awaitable[Any] | Any], *, within: float = 10.0, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"timed out after {within}s waiting for {what or condition}; last={last!r}"
    )


def metric(name: str, **labels: str) -> float:
    """Current value of a Prometheus sample in this process (0 when never touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
