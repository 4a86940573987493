"""Execution's command handling: a new intent's venue call runs beside the next command,
and a cancel of that intent waits for it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal as D

from services.backtest.memory import MemoryReports, MemoryStore
from services.execution.orders import client_order_id
from services.execution.paper import PaperVenue
from services.execution.service import ExecutionService
from services.execution.venues import VenueCommand, VenueReport
from shared.clock import SimulatedClock
from shared.config import load_config
from shared.matching.types import FeeRates, OrderRequest, ProductRules
from shared.messages import (
    CancelOrders,
    IntentKind,
    OrderStatus,
    OrderUpdated,
    TickUpdated,
    TradingMode,
)
from tests.support.execution import btc_usd, place_order
from tests.support.polling import eventually
from tests.support.venue import CONFIG_DIR

T0 = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


class HeldVenue(PaperVenue):
    """The paper venue, except that intent ``held``'s first order waits at the door until
    released."""

    def __init__(self, held: str, rules: dict[str, ProductRules]) -> None:
        fees = FeeRates(maker=D("0.004"), taker=D("0.006"))
        super().__init__(rules, fees=fees, balances={"USD": D(100_000)})
        self.held = held
        self.release = asyncio.Event()

    async def send(self, command: VenueCommand, now: datetime) -> list[VenueReport]:
        if isinstance(command, OrderRequest):
            if command.client_order_id == client_order_id(self.held, 0):
                await self.release.wait()
        return await super().send(command, now)


def _service(clock: SimulatedClock, held: str) -> tuple[ExecutionService, HeldVenue, MemoryReports]:
    info = btc_usd(T0)
    venue = HeldVenue(held, {"BTC-USD": info.rules()})
    reports = MemoryReports()
    service = ExecutionService(
        config=load_config(CONFIG_DIR), venue=venue, store=MemoryStore(), reports=reports,
        clock=clock, mode=TradingMode.PAPER, products={"BTC-USD": info},
    )  # fmt: skip
    service.on_tick(TickUpdated(
        product_id="BTC-USD", best_bid=D("49999"), best_bid_size=D(1), best_ask=D("50001"),
        best_ask_size=D(1), exchange_time=T0,
    ))  # fmt: skip
    return service, venue, reports


def _statuses(reports: MemoryReports, intent_id: str) -> list[OrderStatus]:
    return [r.status for r in reports.pending
            if isinstance(r, OrderUpdated) and r.intent_id == intent_id]  # fmt: skip


async def test_a_slow_venue_call_does_not_hold_up_the_next_intent():
    clock = SimulatedClock(T0)
    service, venue, reports = _service(clock, held="slow")
    await asyncio.wait_for(service.on_place(place_order("slow", clock, quote="500"), 0), 1)
    await asyncio.wait_for(service.on_place(place_order("quick", clock, quote="500"), 0), 1)
    await eventually(lambda: _statuses(reports, "quick")[-1:] == [OrderStatus.OPEN], within=1,
                     what="the second intent's order at the venue")  # fmt: skip
    assert _statuses(reports, "slow") == [OrderStatus.PENDING]  # reported, still at the door
    venue.release.set()
    await asyncio.wait_for(service.drain(), 1)
    assert _statuses(reports, "slow") == [OrderStatus.PENDING, OrderStatus.OPEN]


async def test_a_cancel_waits_for_the_intents_venue_call_then_cancels_it():
    clock = SimulatedClock(T0)
    service, venue, reports = _service(clock, held="slow")
    await service.on_place(place_order("slow", clock, quote="500"), 0)
    cancel = CancelOrders(command_id="pause:1", kinds=(IntentKind.ENTRY,), reason="paused: r",
                          issued_at=clock.now())  # fmt: skip
    cancelling = asyncio.create_task(service.on_cancel(cancel))
    await asyncio.sleep(0.01)
    assert not cancelling.done()  # the intent's step is not over
    venue.release.set()
    await asyncio.wait_for(cancelling, 1)
    await service.drain()
    assert _statuses(reports, "slow") == [
        OrderStatus.PENDING,
        OrderStatus.OPEN,
        OrderStatus.CANCELLED,
    ]
    assert not service.open_intents()
