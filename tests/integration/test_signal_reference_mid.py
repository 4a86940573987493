"""A proposal's reference mid: its product's latest tick, read from market-data's cache in
Redis when the proposal is made, or the deciding candle's close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.signal.app import SignalService
from services.signal.engine import SignalEngine
from services.signal.strategies.base import Signal, Strategy
from shared.bus import Delivery, Publisher
from shared.candle_files import Candle
from shared.clock import SimulatedClock
from shared.messages import CandleClosed, ProposalAction, TradeProposed, decode, new_envelope
from shared.products import LatestTicks
from tests.support.samples import tick

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICK_MAX_AGE_S = 10


class EveryCandle(Strategy):
    """Enters on every candle: each one makes a proposal."""

    def _decide(self, product_id: str, candle: Candle, in_position: bool) -> Signal | None:
        del in_position
        return self._signal(product_id, candle, ProposalAction.ENTRY, "every candle")


async def _propose(service: SignalService, clock: SimulatedClock, n: int) -> TradeProposed:
    """The proposal on the ``n``-th minute's candle, made as it ends."""
    candle = CandleClosed(
        product_id="BTC-USD", granularity_s=60, start=START + timedelta(minutes=n),
        open=Decimal("100"), high=Decimal("102"), low=Decimal("99"), close=Decimal("101"),
        volume=Decimal("3"),
    )  # fmt: skip
    clock.set(START + timedelta(minutes=n + 1))
    delivery = Delivery(f"{n}-0", CandleClosed.STREAM, 1)
    await service.on_candle(new_envelope(candle, clock), delivery)
    ((stream, raw),) = delivery.outbox
    proposal = decode(raw).data
    assert stream == TradeProposed.STREAM and isinstance(proposal, TradeProposed)
    return proposal


async def test_the_latest_fresh_tick_gives_the_mid_else_the_candle_close(redis, bus_keys):
    clock = SimulatedClock(START)
    latest = LatestTicks(redis, bus_keys.prefix)
    strategy = EveryCandle("every", ["BTC-USD"], 60, Decimal("100"))
    service = SignalService(SignalEngine([strategy]), clock, latest, max_lag_s=60,
                            tick_max_age_s=TICK_MAX_AGE_S)  # fmt: skip
    publisher = Publisher(redis, keys=bus_keys)

    assert (await _propose(service, clock, 0)).reference_mid == Decimal("101")  # no tick yet

    clock.set(START + timedelta(minutes=2, seconds=-TICK_MAX_AGE_S))  # as old as may be
    for bid, ask in (("100.00", "100.10"), ("100.20", "100.40")):  # the later one counts
        await publisher.publish(new_envelope(tick(bid=bid, ask=ask), clock),
                                latest_in=(latest.key, "BTC-USD"))  # fmt: skip
    assert (await _propose(service, clock, 1)).reference_mid == Decimal("100.30")
    # a minute later the same tick is too old
    assert (await _propose(service, clock, 2)).reference_mid == Decimal("101")

    clock.set(START + timedelta(minutes=4, seconds=-1))
    await redis.hset(latest.key, "BTC-USD", b"not an envelope")
    assert (await _propose(service, clock, 3)).reference_mid == Decimal("101")  # unreadable
