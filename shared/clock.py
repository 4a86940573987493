"""Injectable clocks: the live wall clock and a simulated clock for tests and backtests.

Domain code never calls ``datetime.now()``; it receives a :class:`Clock`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LiveClock", "ScaledClock", "SimulatedClock", "ensure_utc"]


def ensure_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is a bug and raises ``ValueError``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no timezone; use UTC")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past the last UTC datetime
        raise ValueError(f"{moment.isoformat()} is out of range in UTC") from None


@runtime_checkable
class Clock(Protocol):
    """What a component needs to know about time."""

    def now(self) -> datetime:
        """Current time, UTC-aware."""
        ...

    def now_ns(self) -> int:
        """Current time as integer nanoseconds since the UNIX epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class LiveClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        return _from_ns(time.time_ns())

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Wall time run ``speed`` times faster from ``origin``: at ``origin`` it reads ``origin``.

    Every process given the same origin and speed reads the same time, so a whole stack
    (venue simulator included) can rehearse hours of market in minutes.
    """

    def __init__(self, origin: datetime, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self._origin_ns = _to_ns(ensure_utc(origin))
        self.speed = speed

    def now(self) -> datetime:
        return _from_ns(self.now_ns())

    def now_ns(self) -> int:
        return self._origin_ns + round((time.time_ns() - self._origin_ns) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class SimulatedClock:
    """A clock that moves only when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: datetime) -> None:
        self._ns = _to_ns(ensure_utc(start))
        self._now = (self._ns, _from_ns(self._ns))  # the moment, built once per move

    def now(self) -> datetime:
        ns, moment = self._now
        if ns != self._ns:
            moment = _from_ns(self._ns)
            self._now = (self._ns, moment)
        return moment

    def now_ns(self) -> int:
        return self._ns

    def advance(self, delta: timedelta | float) -> None:
        """Move forward by ``delta`` (a timedelta or seconds); time never runs backwards."""
        step = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if step < 0:
            raise ValueError("a simulated clock cannot move backwards")
        self._ns += round(step * 1_000_000_000)

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``, which must not be earlier than now."""
        target = _to_ns(ensure_utc(moment))
        if target < self._ns:
            raise ValueError("a simulated clock cannot move backwards")
        self._ns = target

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


def _from_ns(ns: int) -> datetime:
    # Integer arithmetic: a float of nanoseconds since 1970 cannot hold microseconds exactly.
    seconds, remainder = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=remainder // 1000)


def _to_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
