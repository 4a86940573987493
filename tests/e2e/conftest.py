"""Fixtures of the e2e tier: services run as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.process import ServiceProcess


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Append every process a test starts; each is stopped when the test ends."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()
