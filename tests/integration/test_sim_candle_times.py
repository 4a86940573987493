"""exchange-sim's clock on the wire: no message, and no candle, claims more market than happened.

The venue's markets move in steps of its market driver. A client reads a message stamped
T as "the venue is past T" and may then take the venue's candles up to T as final;
market-data does exactly that when it fetches a bucket from REST. Here the driver is
stepped by hand on a clock that moves on at every reading, like a scaled clock on a
machine that keeps setting the process aside: whatever the delays, what a message
claims and what REST serves must hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from websockets.asyncio.client import connect

from services.exchange_sim.app import MarketDriver
from services.exchange_sim.candles import Granularity
from shared.candle_files import Candle
from shared.clock import SimulatedClock
from tests.support.market import venue_candles
from tests.support.venue import SimHandle, running_sim

T0 = datetime(2026, 3, 1, 12, 0, 20, tzinfo=UTC)
PRODUCTS = ("BTC-USD", "ETH-USD")
MINUTE = 60
IDLE_DRIVER = {"sim_step_ms": 10_000, "sim_history_minutes": 0}  # the test steps it


class LaggingClock(SimulatedClock):
    """A simulated clock that moves ``lag`` on at every reading."""

    def __init__(self, start: datetime, lag: timedelta) -> None:
        super().__init__(start)
        self._lag = lag

    def now(self) -> datetime:
        self.advance(self._lag)
        return super().now()

    def now_ns(self) -> int:
        self.advance(self._lag)
        return super().now_ns()


def _driver(sim: SimHandle) -> MarketDriver:
    driver: MarketDriver = sim.app.state.driver
    return driver


def _minutes(sim: SimHandle, before: int) -> dict[tuple[str, int], Candle | None]:
    """The venue's one-minute candles (None: no print) of the minutes over by ``before``,
    as it holds them now."""
    first = int(T0.timestamp()) // MINUTE * MINUTE
    found: dict[tuple[str, int], Candle | None] = {}
    for product_id in PRODUCTS:
        held = sim.venue.candles[product_id].candles(first, before, Granularity.ONE_MINUTE)
        by_start = {candle.start: candle for candle in held}
        for start in range(first, before - MINUTE + 1, MINUTE):
            found[(product_id, start)] = by_start.get(start)
    return found


async def _frames_until(socket: Any, channel: str, count: int = 1) -> list[dict[str, Any]]:
    """Every frame up to and including the ``count``-th one of ``channel``."""
    frames: list[dict[str, Any]] = []
    while count:
        frame = orjson.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        assert frame.get("type") != "error", frame
        frames.append(frame)
        count -= frame["channel"] == channel
    return frames


def _newest(frames: Iterable[dict[str, Any]]) -> int:
    stamps = (datetime.fromisoformat(f["timestamp"].replace("Z", "+00:00")) for f in frames)
    return int(max(stamps).timestamp())


async def test_no_message_is_stamped_past_the_market_so_candles_it_claims_are_final() -> None:
    clock = LaggingClock(T0, lag=timedelta(seconds=20))
    async with running_sim(clock=clock, **IDLE_DRIVER) as sim, connect(sim.ws_url) as socket:
        for channel in ("heartbeats", "level2", "market_trades"):
            products = [] if channel == "heartbeats" else list(PRODUCTS)
            request = {"type": "subscribe", "channel": channel, "product_ids": products}
            await socket.send(orjson.dumps(request).decode())
        frames = await _frames_until(socket, "subscriptions", 3)
        claimed: dict[tuple[str, int], Candle | None] = {}
        for _ in range(15):
            _driver(sim).step()
            frames += await _frames_until(socket, "heartbeats")  # the last of a step
            for minute, candle in _minutes(sim, _newest(frames)).items():
                claimed.setdefault(minute, candle)  # as the venue held it when first claimed
        _driver(sim).step()
        final = _minutes(sim, int(sim.venue.time.timestamp()))
    assert sum(candle is not None for candle in claimed.values()) >= 2 * 4, "too few to tell"
    changed = sorted(key for key, candle in claimed.items() if final.get(key) != candle)
    assert not changed, f"candles changed after a message said their minute was over: {changed}"


async def test_the_venues_candles_hold_every_print_up_to_the_request_when_the_driver_is_late(
) -> None:  # fmt: skip
    clock = SimulatedClock(T0)
    async with running_sim(clock=clock, **IDLE_DRIVER) as sim:
        clock.advance(timedelta(minutes=5))  # the driver's next step is late
        first, asked_at = int(T0.timestamp()), int(clock.now().timestamp())
        ended = asked_at - MINUTE + 1  # starts of the minutes over when asked

        async def over() -> dict[str, dict[int, Candle]]:
            return {p: await venue_candles(sim, p, MINUTE, first, ended) for p in PRODUCTS}

        served = await over()
        clock.advance(timedelta(minutes=2))
        _driver(sim).step()
        later = await over()
    assert all(len(candles) >= 4 for candles in served.values()), served
    assert served == later
