"""Metrics the dashboards and alerts read: risk's gauges, execution's latency and modeled
slippage, and the series that exist at zero before anything happens."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from services.backtest.memory import MemoryReports, MemoryStore
from services.execution.paper import PaperVenue
from services.execution.service import ExecutionService
from services.rate_limiter.app import RateLimiterSettings
from services.rate_limiter.app import bootstrap as rate_limiter_app
from services.risk.service import export_gauges
from services.risk.state import TradingState
from shared.bus import BusKeys, ConsumerSettings, StreamConsumer
from shared.bus.dead_letter import REASONS
from shared.clock import SimulatedClock
from shared.config import load_config
from shared.matching.types import FeeRates
from shared.messages import (
    BookLevel,
    BookUpdated,
    IntentFinished,
    IntentKind,
    Liquidity,
    LiquidityPreference,
    OrderFilled,
    TickUpdated,
    TradingMode,
)
from shared.money import Side
from shared.slippage import CostModel, TierCosts
from tests.support.execution import btc_usd, place_order
from tests.support.polling import metric
from tests.support.venue import CONFIG_DIR
from tests.unit.risk_helpers import NOW, engine, fill

T0 = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)

# --- risk ------------------------------------------------------------------------------


def test_theme_exposure_is_the_sum_of_its_products_shares_of_equity():
    risk = engine(capital="10000")
    for product, price in (("ETH-USD", "100"), ("SOL-USD", "50"), ("BTC-USD", "200")):
        risk.on_fill(fill(product, Side.BUY, price, "10"), NOW)  # 1000, 500, 2000 USD
    export_gauges(risk.book)
    equity = float(risk.book.portfolio.equity())
    assert metric("risk_exposure_pct", product="ETH-USD") == pytest.approx(100_000 / equity)
    assert metric("risk_theme_exposure_pct", theme="smart_contracts") == pytest.approx(
        metric("risk_exposure_pct", product="ETH-USD")
        + metric("risk_exposure_pct", product="SOL-USD")
    )
    assert metric("risk_theme_exposure_pct", theme="store_of_value") == pytest.approx(
        200_000 / equity
    )
    assert metric("risk_theme_exposure_pct", theme="payments") == 0


def test_a_product_no_longer_traded_keeps_its_exposure_only_while_held():
    risk = engine(capital="10000")
    risk.on_fill(fill("SOL-USD", Side.BUY, "50", "10"), NOW)  # 500 USD held
    export_gauges(risk.book)
    series = REGISTRY.get_sample_value
    assert series("risk_exposure_pct", {"product": "ETH-USD"}) == 0
    assert series("risk_theme_exposure_pct", {"theme": "smart_contracts"}) > 0
    del risk.book.rules["ETH-USD"], risk.book.rules["SOL-USD"]  # both delisted
    export_gauges(risk.book)
    assert series("risk_exposure_pct", {"product": "ETH-USD"}) is None  # gone, not stale
    equity = float(risk.book.portfolio.equity())
    assert series("risk_exposure_pct", {"product": "SOL-USD"}) == pytest.approx(50_000 / equity)
    assert series("risk_theme_exposure_pct", {"theme": "smart_contracts"}) is None
    assert series("risk_theme_exposure_pct", {"theme": "store_of_value"}) == 0
    risk.on_fill(fill("SOL-USD", Side.SELL, "50", "10"), NOW)  # sold out: nothing held
    export_gauges(risk.book)
    assert series("risk_exposure_pct", {"product": "SOL-USD"}) is None


def test_pnl_gauges_split_realized_unrealized_and_fees():
    risk = engine(capital="10000")
    risk.on_fill(fill("BTC-USD", Side.BUY, "100", "10", fee="1"), NOW)
    risk.on_fill(fill("BTC-USD", Side.SELL, "110", "4", fee="0.5"), NOW)
    risk.book.portfolio.mark("BTC-USD", D("120"))
    export_gauges(risk.book)
    assert metric("risk_realized_pnl_usd") == pytest.approx(40)  # 4 sold 10 above cost
    assert metric("risk_unrealized_pnl_usd") == pytest.approx(120)  # 6 held 20 above cost
    assert metric("risk_fees_usd") == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("state", "name", "entries_allowed"),
    [
        (TradingState(), "RUNNING", 1),
        (TradingState(entries_allowed=False, reason="news"), "PAUSED", 0),
        (TradingState(entries_allowed=False, reason="x", flatten_id="flt-1"), "FLATTENING", 0),
    ],
)
def test_exactly_the_current_trading_state_reads_one(state, name, entries_allowed):
    export_gauges(engine(state=state).book)
    values = {s: metric("risk_trading_state", state=s) for s in ("RUNNING", "PAUSED", "FLATTENING")}
    assert values == {s: float(s == name) for s in values}
    assert metric("risk_entries_allowed") == entries_allowed


# --- execution -------------------------------------------------------------------------


def _execution(
    clock: SimulatedClock, ask: str = "50001", *more_asks: tuple[str, str]
) -> tuple[ExecutionService, PaperVenue, MemoryReports]:
    """BTC-USD on the paper venue with a book of one level a side (and ``more_asks``, as
    price and size); quotes at 49999/50001."""
    info = btc_usd(T0)
    venue = PaperVenue({"BTC-USD": info.rules()}, fees=FeeRates(maker=D("0.004"),
                       taker=D("0.006")), balances={"USD": D(100_000), "BTC": D(1)})  # fmt: skip
    costs = CostModel({1: TierCosts(D(10), D(5), D(50_000))})
    reports = MemoryReports()
    service = ExecutionService(
        config=load_config(CONFIG_DIR), venue=venue, store=MemoryStore(),
        reports=reports, clock=clock, mode=TradingMode.PAPER,
        products={"BTC-USD": info}, costs=costs,
    )  # fmt: skip
    venue.on_book(BookUpdated(
        product_id="BTC-USD", bids=(BookLevel(price=D("49999"), size=D(1)),),
        asks=(BookLevel(price=D(ask), size=D(1)),
              *(BookLevel(price=D(p), size=D(s)) for p, s in more_asks)), exchange_time=T0,
    ), clock.now())  # fmt: skip
    return service, venue, reports


def _tick(last: str | None = None) -> TickUpdated:
    return TickUpdated(
        product_id="BTC-USD", best_bid=D("49999"), best_bid_size=D(1), best_ask=D("50001"),
        best_ask_size=D(1), last_price=D(last) if last else None,
        last_size=D(1) if last else None, exchange_time=T0,
    )  # fmt: skip


async def test_a_taker_order_is_set_against_the_cost_models_slippage_for_its_size():
    """An order walking two levels is one observation: its average price, and the model
    at its whole notional."""
    clock = SimulatedClock(T0)
    service, _venue, reports = _execution(clock, "50100", ("50200", "1"))
    service.on_tick(_tick())
    series = ("execution_modeled_slippage_bps_count", "execution_modeled_slippage_bps_sum",
              "execution_taker_order_slippage_bps_count")  # fmt: skip
    before = [metric(name, tier="1") for name in series]
    order = place_order("taker-1", clock, base="1.5", liquidity=LiquidityPreference.TAKER)
    await service.on_place(order, clock.now_ns())
    await service.drain()
    fills = [r for r in reports.pending if isinstance(r, OrderFilled)]
    assert [(f.price, f.size) for f in fills] == [(50_100, 1), (50_200, D("0.5"))]
    assert {f.liquidity for f in fills} == {Liquidity.TAKER}
    assert any(isinstance(r, IntentFinished) for r in reports.pending)
    count, modeled, observed = (
        metric(n, tier="1") - b for n, b in zip(series, before, strict=True)
    )
    # the tier's 10 bps, plus 5 bps times the root of the order's 75 000 USD over 50 000
    assert (count, observed) == (1, 1)
    assert modeled == pytest.approx(10 + 5 * math.sqrt(1.5 * 50_000 / 50_000))
    # the average price, 50 133.33, is 26.7 bps over the mid: the 20-50 bucket
    assert _bucket("execution_taker_order_slippage_bps", "50.0") - _bucket(
        "execution_taker_order_slippage_bps", "20.0") >= 1  # fmt: skip


def _bucket(name: str, bound: str) -> float:
    return metric(f"{name}_bucket", tier="1", le=bound)


async def test_a_maker_fill_has_no_modeled_slippage():
    clock = SimulatedClock(T0)
    service, venue, _reports = _execution(clock)
    service.on_tick(_tick())
    before = metric("execution_modeled_slippage_bps_count", tier="1")
    makers = metric("execution_fills_total", liquidity="MAKER")
    await service.on_place(place_order("maker-1", clock, quote="500"), clock.now_ns())
    await service.drain()
    clock.advance(MS)
    venue.on_tick(_tick(last="49990"), clock.now())  # a trade through our resting bid
    await service.on_timer()
    assert metric("execution_fills_total", liquidity="MAKER") > makers
    assert metric("execution_modeled_slippage_bps_count", tier="1") == before


async def test_the_first_order_of_an_intent_records_the_time_since_its_market_data():
    clock = SimulatedClock(T0)
    service, _venue, _reports = _execution(clock)
    service.on_tick(_tick())
    before = (metric("execution_order_latency_seconds_count", kind="EXIT"),
              metric("execution_order_latency_seconds_sum", kind="EXIT"))  # fmt: skip
    origin = clock.now_ns()
    clock.advance(250 * MS)
    order = place_order("exit-1", clock, kind=IntentKind.EXIT, side=Side.SELL, base="0.01",
                        liquidity=LiquidityPreference.TAKER)  # fmt: skip
    await service.on_place(order, origin)
    await service.drain()
    await service.on_place(order, origin)  # the same intent again: no second first order
    await service.drain()
    count = metric("execution_order_latency_seconds_count", kind="EXIT") - before[0]
    total = metric("execution_order_latency_seconds_sum", kind="EXIT") - before[1]
    assert count == 1 and total == pytest.approx(0.25)


async def test_an_order_after_the_first_does_not_count_as_market_data_to_order():
    clock = SimulatedClock(T0)
    service, _venue, _reports = _execution(clock)
    service.on_tick(_tick())
    before = metric("execution_order_latency_seconds_count", kind="ENTRY")
    sent = metric("execution_orders_sent_total", role="TAKER")
    await service.on_place(place_order("maker-then-taker", clock, quote="500"), clock.now_ns())
    await service.drain()
    clock.advance(timedelta(seconds=30))  # past the maker wait: the rest goes taker
    for _ in range(3):
        await service.on_timer()
    assert metric("execution_orders_sent_total", role="TAKER") == sent + 1
    assert metric("execution_order_latency_seconds_count", kind="ENTRY") == before + 1


# --- series that exist before anything happens -----------------------------------------


async def test_every_dead_letter_reason_is_exported_at_zero_from_the_start():
    redis = Redis()  # never connected: the consumer is only built, not run
    settings = ConsumerSettings(stream="metrics.fresh", group="g", consumer="c")

    async def handler(envelope, delivery):  # type: ignore[no-untyped-def]
        del envelope, delivery

    StreamConsumer(redis, settings, handler, keys=BusKeys("metrics-test:"))
    for reason in REASONS:
        labels = {"stream": "metrics.fresh", "group": "g", "reason": reason}
        assert metric_or_none("bus_dead_lettered_total", labels) == 0, reason
    await redis.aclose()


def test_every_rate_limit_channel_is_exported_at_zero_from_the_start():
    rate_limiter_app(RateLimiterSettings(config_dir=CONFIG_DIR))
    for channel in ("public", "private", "websocket"):
        for name in ("ratelimit_429_reported_total", "ratelimit_tokens_refused_total"):
            assert metric_or_none(name, {"channel": channel}) is not None, (name, channel)


def metric_or_none(name: str, labels: dict[str, str]) -> float | None:
    """The sample's value, or None when the series does not exist (``metric`` says 0)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)
