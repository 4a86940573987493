"""The execution service in PAPER over real Redis and Postgres, driven through its streams."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, update

from services.execution.orders import client_order_id
from shared.bus import Publisher
from shared.clock import SimulatedClock
from shared.db import ExecutionIntent, SlippageCalibration, make_engine, upgrade
from shared.messages import (
    CancelOrders,
    IntentFinished,
    IntentKind,
    Liquidity,
    LiquidityPreference,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    TradingMode,
    decode,
)
from shared.money import Side
from shared.products import ProductCatalog
from tests.support.execution import (
    Market,
    execution_service,
    fills_of,
    orders_of,
    place_order,
)
from tests.support.polling import eventually, metric
from tests.support.risk import seed_catalog

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
BIDS = [("49990", "0.5"), ("49980", "1"), ("49970", "2")]
ASKS = [("50010", "0.5"), ("50020", "1"), ("50030", "2")]


@pytest.fixture
async def stack(redis, redis_url, bus_keys, pg_url, pg_engine):
    upgrade(pg_url)
    clock = SimulatedClock(START)
    await seed_catalog(redis, bus_keys, clock)
    publisher = Publisher(redis, keys=bus_keys)
    return {"redis": redis, "redis_url": redis_url, "keys": bus_keys, "db": pg_engine,
            "clock": clock, "market": Market(publisher, clock)}  # fmt: skip


def _service(stack, **settings):
    return execution_service(stack["redis_url"], stack["keys"], stack["db"], stack["clock"],
                             **settings)  # fmt: skip


async def _reports(stack):
    entries = await stack["redis"].xrange(stack["keys"].stream("exec.reports"))
    return [decode(fields[b"env"]) for _id, fields in entries]


async def _finished(stack, intent_id):
    async def check():
        for envelope in await _reports(stack):
            if isinstance(envelope.data, IntentFinished) and envelope.data.intent_id == intent_id:
                return envelope.data
        return None

    return await eventually(check, what=f"IntentFinished for {intent_id}")


async def _open_market(handle, market, *, quote=True):
    """Once the service is ready: the book (and a quote) published and seen."""
    await _ready(handle)
    await market.book(BIDS, ASKS)
    venue = handle.service.venue
    await eventually(lambda: venue.account.books["BTC-USD"].asks(1), what="book seen")
    if quote:
        await market.tick("49990", "50010")
        await eventually(lambda: "BTC-USD" in handle.service._quotes, what="quote seen")


async def _ready(handle):
    async def ready():
        return (await handle.client.get("/readyz")).status_code == 200

    await eventually(ready, what="execution ready")


async def test_an_entry_rests_as_maker_and_fills_when_the_market_trades_through_it(stack):
    market, clock = stack["market"], stack["clock"]
    async with _service(stack) as handle:
        await _open_market(handle, market)
        command = place_order("entry:1", clock, quote="1000")
        await market.publish(command, origin_ts=123_456_789)
        orders = await eventually(lambda: orders_of(stack["db"], "entry:1"), what="order")
        assert orders[0].post_only and orders[0].limit_price == Decimal("49990")
        await eventually(lambda: _status(stack, "entry:1", OrderStatus.OPEN), what="resting")
        await market.tick("49990", "50010", last="49990", last_size="5")  # at the limit: waits
        await market.tick("49985", "50010", last="49985", last_size="5")  # through it: fills
        finished = await _finished(stack, "entry:1")
    assert finished.status is OrderStatus.FILLED
    [fill] = await fills_of(stack["db"], "entry:1")
    assert fill.liquidity == "MAKER" and fill.price == Decimal("49990")
    assert fill.arrival_mid == Decimal("50000") and fill.mode == "PAPER"
    assert fill.fee == (fill.price * fill.size * Decimal("0.006")).quantize(Decimal("0.01"))
    assert fill.size == Decimal("0.01988469")  # 1000 / (49990 * 1.006): the fee fits in
    assert fill.fee == Decimal("5.96")
    reports = await _reports(stack)
    assert {envelope.origin_ts for envelope in reports} == {123_456_789}
    kinds = [type(envelope.data).__name__ for envelope in reports]
    assert kinds.index("OrderFilled") < kinds.index("IntentFinished")


async def _status(stack, intent_id, status):
    return any(
        isinstance(e.data, OrderUpdated) and e.data.intent_id == intent_id
        and e.data.status is status for e in await _reports(stack)
    )  # fmt: skip


async def test_a_taker_exit_walks_the_book_and_stops_where_depth_runs_out(stack):
    market, clock = stack["market"], stack["clock"]
    async with _service(stack, exec_paper_balances={"USD": "0", "BTC": "10"}) as handle:
        await _open_market(handle, market, quote=False)
        exit_ = place_order("exit:1", clock, kind=IntentKind.EXIT, side=Side.SELL, base="5",
                            liquidity=LiquidityPreference.TAKER)  # fmt: skip
        await market.publish(exit_)
        finished = await _finished(stack, "exit:1")
    fills = await fills_of(stack["db"], "exit:1")
    assert [(f.price, f.size, f.liquidity) for f in fills] == [
        (Decimal("49990"), Decimal("0.5"), "TAKER"), (Decimal("49980"), Decimal("1"), "TAKER"),
        (Decimal("49970"), Decimal("2"), "TAKER"),
    ]  # fmt: skip
    assert finished.status is OrderStatus.FILLED and finished.filled_base == Decimal("3.5")
    assert all(f.fee == (f.price * f.size * Decimal("0.012")).quantize(Decimal("0.01"))
               for f in fills)  # fmt: skip


async def test_after_the_maker_wait_the_rest_goes_taker(stack):
    market, clock = stack["market"], stack["clock"]
    async with _service(stack) as handle:
        await _open_market(handle, market)
        await market.publish(place_order("entry:2", clock, quote="1000"))
        await eventually(lambda: _status(stack, "entry:2", OrderStatus.OPEN), what="resting")
        clock.advance(timedelta(seconds=20))  # policy.yaml: maker_wait_ttl_s 20
        finished = await _finished(stack, "entry:2")
    orders = await orders_of(stack["db"], "entry:2")
    assert [(o.order_type, o.status) for o in orders] == [("LIMIT", "CANCELLED"),
                                                         ("MARKET", "FILLED")]  # fmt: skip
    [fill] = await fills_of(stack["db"], "entry:2")
    assert fill.liquidity == "TAKER" and fill.price == Decimal("50010")
    assert finished.status is OrderStatus.FILLED
    assert finished.filled_quote + fill.fee <= Decimal("1000")


async def test_a_republished_intent_places_one_order(stack):
    market, clock = stack["market"], stack["clock"]
    async with _service(stack) as handle:
        await _open_market(handle, market, quote=False)
        command = place_order("entry:3", clock, quote="100", liquidity=LiquidityPreference.TAKER)
        for _ in range(3):  # risk republishes open orders on every restore
            await market.publish(command)
        await _finished(stack, "entry:3")
        await market.publish(command)
        await eventually(lambda: _handled_all(stack), what="commands handled")
    assert len(await orders_of(stack["db"], "entry:3")) == 1
    assert len(await fills_of(stack["db"], "entry:3")) == 1
    finishes = [e for e in await _reports(stack) if isinstance(e.data, IntentFinished)]
    assert len(finishes) == 1


async def test_only_the_latest_finished_intents_stay_in_memory(stack, monkeypatch):
    monkeypatch.setattr("services.execution.service.RETAINED_FINISHED", 2)
    market, clock = stack["market"], stack["clock"]
    async with _service(stack) as handle:
        await _open_market(handle, market, quote=False)
        commands = [place_order(f"entry:{n}", clock, quote="100",
                                liquidity=LiquidityPreference.TAKER) for n in range(4)]  # fmt: skip
        for command in commands:
            await market.publish(command)
            await _finished(stack, command.intent_id)
        service = handle.service
        assert list(service.intents) == ["entry:2", "entry:3"]
        # what is kept per intent goes with it: applied trade ids, origins, order families
        assert set(service._trades) == set(service._origin) == {"entry:2", "entry:3"}
        assert len(service._families) == 2
        await market.publish(commands[0])  # forgotten here, refused by its record
        await eventually(lambda: _handled_all(stack), what="commands handled")
    assert [len(await orders_of(stack["db"], c.intent_id)) for c in commands] == [1, 1, 1, 1]
    finishes = [e for e in await _reports(stack) if isinstance(e.data, IntentFinished)]
    assert len(finishes) == 4


async def _handled_all(stack):
    groups = await stack["redis"].xinfo_groups(stack["keys"].stream("risk.orders"))
    return all(g["pending"] == 0 and g["lag"] == 0 for g in groups)


async def test_cancel_orders_ends_a_resting_entry(stack):
    market, clock = stack["market"], stack["clock"]
    async with _service(stack) as handle:
        await _open_market(handle, market)
        await market.publish(place_order("entry:4", clock, quote="1000"))
        await eventually(lambda: _status(stack, "entry:4", OrderStatus.OPEN), what="resting")
        await market.publish(CancelOrders(command_id="c1", kinds=(IntentKind.ENTRY,),
                                          reason="paused", issued_at=clock.now()))  # fmt: skip
        finished = await _finished(stack, "entry:4")
    assert finished.status is OrderStatus.CANCELLED and finished.reason == "paused"
    [order] = await orders_of(stack["db"], "entry:4")
    assert order.status == "CANCELLED"


async def test_entries_on_a_cancel_only_product_are_refused_with_that_reason(stack):
    market, clock, redis = stack["market"], stack["clock"], stack["redis"]
    catalog = ProductCatalog(redis, stack["keys"].prefix)
    info = await catalog.get("BTC-USD")
    await catalog.save([info.model_copy(update={"cancel_only": True, "entries_allowed": False})])
    async with _service(stack) as handle:
        await _ready(handle)
        await market.publish(place_order("entry:5", clock, quote="100"))
        finished = await _finished(stack, "entry:5")
    assert finished.status is OrderStatus.REJECTED and finished.reason == "cancel_only"
    assert await orders_of(stack["db"], "entry:5") == []


async def test_a_restart_ends_what_was_resting_and_keeps_the_balances(stack):
    market, clock = stack["market"], stack["clock"]
    balances = {"USD": "1000"}
    async with _service(stack, exec_paper_balances=balances) as handle:
        await _open_market(handle, market)
        await market.publish(place_order("entry:6", clock, quote="500",
                                         liquidity=LiquidityPreference.TAKER))  # fmt: skip
        bought = await _finished(stack, "entry:6")
        await market.publish(place_order("entry:7", clock, quote="400"))
        await eventually(lambda: _status(stack, "entry:7", OrderStatus.OPEN), what="resting")
    async with _service(stack, exec_paper_balances=balances) as handle:
        await _ready(handle)
        resting = await _finished(stack, "entry:7")
        assert resting.status is OrderStatus.EXPIRED and resting.reason == "paper_venue_restarted"
        venue = handle.service.venue
        assert venue.available("BTC") == bought.filled_base
        spent = bought.filled_quote + sum(f.fee for f in await fills_of(stack["db"], "entry:6"))
        assert venue.available("USD") == Decimal("1000") - spent
        await market.book(BIDS, ASKS)
        await eventually(lambda: venue.account.books["BTC-USD"].bids(1), what="book seen")
        exit_ = place_order(
            "exit:6",
            clock,
            kind=IntentKind.EXIT,
            side=Side.SELL,
            base=str(bought.filled_base),
            liquidity=LiquidityPreference.TAKER,
        )
        await market.publish(exit_)
        sold = await _finished(stack, "exit:6")
        # risk republishes its open orders when it restores: a new process works none twice
        await market.publish(place_order("entry:6", clock, quote="500",
                                         liquidity=LiquidityPreference.TAKER))  # fmt: skip
        await eventually(lambda: _handled_all(stack), what="commands handled")
        assert "entry:6" not in handle.service._locks  # refused: nothing kept of it
    assert sold.status is OrderStatus.FILLED and sold.filled_base == bought.filled_base
    assert len(await orders_of(stack["db"], "entry:6")) == 1
    assert len(await fills_of(stack["db"], "entry:6")) == 1


async def test_a_finish_a_crash_did_not_report_is_reported_after_the_restart(stack):
    market, clock = stack["market"], stack["clock"]
    async with _service(stack) as handle:
        await _open_market(handle, market, quote=False)
        await market.publish(place_order("entry:8", clock, quote="100",
                                         liquidity=LiquidityPreference.TAKER))  # fmt: skip
        await _finished(stack, "entry:8")
    await stack["redis"].delete(stack["keys"].stream("exec.reports"))
    async with stack["db"].begin() as connection:  # as if the process died before reporting
        await connection.execute(update(ExecutionIntent).values(reported=False))
    async with _service(stack) as handle:
        await _ready(handle)
        finished = await _finished(stack, "entry:8")
    reports = await _reports(stack)
    fills = [e for e in reports if isinstance(e.data, OrderFilled)]
    assert len(fills) == 1 and fills[0].data.liquidity is Liquidity.TAKER
    assert fills[0].data.mode is TradingMode.PAPER
    assert finished.status is OrderStatus.FILLED
    assert [e.id for e in reports] == [f"exec:fill:{fills[0].data.trade_id}",
                                       "exec:finished:entry:8"]  # fmt: skip


async def test_modeled_slippage_comes_from_the_latest_calibration_of_the_mode(stack):
    rows = [  # tier 1: an old and a newer PAPER fit, and a LIVE fit that must not count
        (TradingMode.PAPER, "4.0", START - timedelta(days=2)),
        (TradingMode.PAPER, "3.5", START - timedelta(days=1)),
        (TradingMode.LIVE, "9.0", START),
    ]
    async with stack["db"].begin() as connection:
        for mode, base, created in rows:
            await connection.execute(insert(SlippageCalibration).values(
                tier=1, product_id=None, base_slippage_bps=Decimal(base),
                impact_coefficient=Decimal(2), typical_notional_usd=Decimal(50_000),
                sample_size=100, window_start=created - timedelta(days=7), window_end=created,
                fit_error_bps=None, config_error_bps=None, mode=mode.value, created_at=created,
            ))  # fmt: skip
    async with _service(stack) as handle:
        await _ready(handle)
        tier_1 = handle.service.costs.tier(1)
        assert (tier_1.base_slippage_bps, tier_1.impact_coefficient_bps) == (Decimal("3.5"), 2)
        assert handle.service.costs.tier(2).base_slippage_bps == 25  # never fitted: config


@pytest.fixture
async def outage_stack(redis, redis_url, bus_keys, own_postgres):
    """The ``stack`` of these tests, on a Postgres of the test's own that it may stop."""
    database = make_engine(own_postgres.url)
    clock = SimulatedClock(START)
    await seed_catalog(redis, bus_keys, clock)
    yield {"redis": redis, "redis_url": redis_url, "keys": bus_keys, "db": database,
           "clock": clock, "market": Market(Publisher(redis, keys=bus_keys), clock),
           "postgres": own_postgres}  # fmt: skip
    await database.dispose()


async def test_a_paper_fill_made_while_postgres_is_down_is_stored_and_reported_once(
    outage_stack,
):
    """The paper book fills a resting order while Postgres is down: the timer round that
    takes the fill cannot record it. Once Postgres is back, the intent is rebuilt from its
    record and the paper venue, which still holds the order, and the fill lands once."""
    stack = outage_stack
    database, clock, own_postgres = stack["db"], stack["clock"], stack["postgres"]
    market = stack["market"]
    async with _service(stack) as handle:
        await _open_market(handle, market)
        await market.publish(place_order("entry:outage", clock, quote="1000"), origin_ts=5)
        await eventually(lambda: _status(stack, "entry:outage", OrderStatus.OPEN), what="resting")
        await asyncio.to_thread(own_postgres.halt)
        rebuilt = metric("execution_intent_resyncs_total")
        await market.tick("49985", "50010", last="49985", last_size="5")  # through it: fills
        venue = handle.service.venue
        order = venue.account.order_by_client_id(client_order_id("entry:outage", 0))
        await eventually(lambda: order.status.value == "FILLED", what="the paper fill")
        await eventually(lambda: "entry:outage" in handle.service._unsynced,
                         what="a timer round taking the fill and failing to record it")  # fmt: skip
        assert not await _status(stack, "entry:outage", OrderStatus.FILLED)
        assert metric("execution_intents_behind_record") == 1
        await asyncio.to_thread(own_postgres.resume)
        finished = await _finished(stack, "entry:outage")
        assert metric("execution_intent_resyncs_total") == rebuilt + 1
        assert metric("execution_intents_behind_record") == 0
    assert finished.status is OrderStatus.FILLED
    [fill] = await fills_of(database, "entry:outage")
    assert (fill.liquidity, fill.price, fill.size) == ("MAKER", Decimal("49990"), order.filled_size)
    reported = [e.data for e in await _reports(stack) if isinstance(e.data, OrderFilled)]
    assert [r.trade_id for r in reported] == [fill.trade_id]


async def test_a_cancel_waits_for_the_record_and_acts_on_the_intent_as_rebuilt(outage_stack):
    """Part of a resting order fills while Postgres is down. A cancel then cannot be
    handled (it is retried from the stream); once Postgres is back it cancels the intent
    as rebuilt from its record, and the part that filled is recorded once."""
    stack = outage_stack
    database, clock, own_postgres = stack["db"], stack["clock"], stack["postgres"]
    market = stack["market"]
    cancel = CancelOrders(command_id="c-outage", kinds=(IntentKind.ENTRY,), reason="paused",
                          issued_at=clock.now())  # fmt: skip
    async with _service(stack) as handle:
        service = handle.service
        await _open_market(handle, market)
        await market.publish(place_order("entry:part", clock, base="0.1"), origin_ts=6)
        await eventually(lambda: _status(stack, "entry:part", OrderStatus.OPEN), what="resting")
        await asyncio.to_thread(own_postgres.halt)
        await market.tick("49985", "50010", last="49985", last_size="0.04")  # fills 0.04
        order = service.venue.account.order_by_client_id(client_order_id("entry:part", 0))
        await eventually(lambda: order.filled_size > 0, what="the paper fill")
        await eventually(lambda: "entry:part" in service._unsynced, what="the failed record")
        with pytest.raises(Exception, match="connect"):
            await service.on_cancel(cancel)
        await asyncio.to_thread(own_postgres.resume)
        await service.on_cancel(cancel)
        finished = await _finished(stack, "entry:part")
    assert finished.status is OrderStatus.CANCELLED and finished.reason == "paused"
    [fill] = await fills_of(database, "entry:part")
    assert fill.size == order.filled_size == finished.filled_base
    assert order.status.value == "CANCELLED"
    reported = [e.data for e in await _reports(stack) if isinstance(e.data, OrderFilled)]
    assert [r.trade_id for r in reported] == [fill.trade_id]
