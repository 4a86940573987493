"""Small asyncio pieces every worker loop needs."""

from __future__ import annotations

import asyncio

__all__ = ["pause_unless_stopped"]


async def pause_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile; True when it was set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True
