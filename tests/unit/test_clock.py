from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.clock import Clock, LiveClock, SimulatedClock, ensure_utc

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_simulated_clock_moves_only_when_told():
    clock = SimulatedClock(START)
    assert clock.now() == START
    clock.advance(timedelta(seconds=1.5))
    clock.advance(0.25)
    assert clock.now() == START + timedelta(seconds=1.75)
    assert clock.now_ns() == int(START.timestamp()) * 10**9 + 1_750_000_000


def test_simulated_clock_never_runs_backwards():
    clock = SimulatedClock(START)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(START - timedelta(microseconds=1))
    clock.set(START + timedelta(days=400))
    assert clock.now() == START + timedelta(days=400)


async def test_simulated_sleep_advances_instantly():
    clock = SimulatedClock(START)
    await clock.sleep(3600)
    assert clock.now() == START + timedelta(hours=1)


def test_clocks_are_utc_aware_and_satisfy_the_protocol():
    for clock in (LiveClock(), SimulatedClock(START)):
        assert isinstance(clock, Clock)
        assert clock.now().tzinfo is not None
        assert clock.now().utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused_and_offsets_normalised():
    with pytest.raises(ValueError, match="naive"):
        SimulatedClock(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    plus_two = datetime(2026, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert ensure_utc(plus_two) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert ensure_utc(plus_two).tzinfo is UTC
