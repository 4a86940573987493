"""The backtest against the services: the same candles give the same proposals, the same
risk decisions in the same order, and fills at prices the market between them allows.

exchange-sim runs in-process on a scaled clock; market-data, signal, risk and execution
(PAPER, real Redis and Postgres) run as processes on the same clock. Once market-data
has stopped and the rest has drained, the 60-second candles it published become the
backtest's history, and ``services.backtest`` replays them through the same cores.

What is chosen so that a difference can only be a difference of behaviour, not of timing:

- Exits come from strategy signals only. Risk's own stop-loss and take-profit fire on
  ticks, at an instant inside a candle: the backtest's intra-candle path (open, low,
  high, close) is a model of the sim's, so such exits would fire at different instants
  or not at all. The policy's percentages are wide, the ema cross's ATR bracket is as
  wide as its config allows (20 ATRs, reward 20:1), and mean reversion is left out: its
  take-profit is the middle band, which the price reaches intra-candle by design.
- Rejections come from gates a few seconds of delay cannot move: ``max_open_trades: 1``
  (a second product's entry is refused while the first is held or entering) and a
  cooldown of 150 s, which sits 30 s from both 120 s and 180 s, the nearest gaps two
  entries on one product can have (entries are decided at candle closes, whole minutes
  apart, and the services decide a few seconds after each close, the backtest at it).
  The hourly window (3600 s, a whole number of minutes) and the budgets are set so they
  never bind, and risk's proposal max age is lifted: the backtest decides a proposal at
  the instant it is made, so that gate exists only in the services.
- The paper latency is 5 s of market (83 ms of wall time at this speed) in both. When
  one product's exit and another's entry are decided at the same close, risk decides
  the entry a few milliseconds after the exit, so the exit's fill cannot have reached it:
  the entry is refused on max_open_trades in both, with a wide margin (risk decides the
  second 0.5 s of market after the first; the fill comes 5 s after).
- Market-data's start-up candles are history to signal (published long after their
  end), the rest live; the backtest's ``trade_from`` draws that line once for every
  product (see ``tests.support.parity.trade_from`` for the one candle where products
  may differ, and why it cannot signal here).

Fill prices cannot be equal: the services decide 2 s (market-data's close delay) plus
processing after a close and fill on the sim's book (spread 0.5-1 bps), the backtest
decides at the close and fills at its model mid (``without_slippage()``: a locked book at
the mid, the closest model of a 1-2 bps book; the tier model's 10 bps would be further
off). So each intent's VWAP in the two runs may differ by what the market moved between
the two fills: at most the range (high - low) of the candles spanning them, from a book
interval before the first, plus 5 bps for the spread and a print walking a level. The
assertion prints every gap and its bound.
"""

from __future__ import annotations

import shutil
import signal
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.backtest.engine import BacktestOptions
from services.signal.strategies import build_strategies
from shared.bus import BusKeys
from shared.clock import LiveClock, ScaledClock
from shared.config import load_config
from shared.db import Fill, RiskDecision, upgrade
from shared.messages import CandleClosed, OrderFilled, PlaceOrder, TradeProposed
from tests.e2e.process import ServiceProcess
from tests.support.parity import (
    History,
    Record,
    drained,
    fill_gaps,
    history_from_stream,
    open_intents,
    pipeline_record,
    run_parity_backtest,
    stray_exits,
    trade_from,
)
from tests.support.polling import eventually
from tests.support.venue import CONFIG_DIR, rate_limiter_service, running_sim

SPEED = 60.0  # a minute of market a second
GRANULARITY_S = 60
MAX_LAG_S = 30.0
LATENCY = timedelta(seconds=5)
CAPITAL = Decimal(10_000)
BOOK_INTERVAL_MS = 50  # md.books every 3 s of market
BOOK_AGE = timedelta(seconds=5)  # a book snapshot and an execution timer round, at most
MARGIN_BPS = Decimal(5)
DECISIONS, REJECTIONS, FILLS = 14, 2, 6  # run the services until they have made this many
STRATEGY = "fast_trend"
SLOW_PERIOD = 5
# Start-up candles, all history to signal but perhaps the last (see parity.trade_from):
# as many as the slow EMA needs to be ready, so that last one can never cross.
BACKFILL = SLOW_PERIOD
STRATEGIES = {"strategies": [
    {"name": STRATEGY, "kind": "ema_cross", "products": ["BTC-USD", "ETH-USD"],
     "granularity_s": GRANULARITY_S, "quote_size_usd": 100,
     "params": {"fast_period": 2, "slow_period": SLOW_PERIOD, "atr_period": 5,
                "atr_stop_multiple": 20, "reward_risk_ratio": 20}},
]}  # fmt: skip
RISK = {
    "theme_caps_pct": {"store_of_value": 30, "smart_contracts": 35},
    "asset_caps_pct": {"BTC-USD": 30, "ETH-USD": 20},
    "default_asset_cap_pct": 10, "stop_loss_pct": 50, "take_profit_pct": 500,
    "max_open_trades": 1, "max_trades_per_hour": 1000, "max_trades_per_day": 10000,
    "hourly_budget_usd": 1_000_000, "daily_budget_usd": 1_000_000,
    "new_trade_cooldown_s": 150, "open_trades_lookback_s": 3600, "dust_threshold_usd": 1,
    "min_trade_usd": 10, "daily_loss_limit_pct": 3, "max_drawdown_pct": 10,
}  # fmt: skip
EXECUTION = {
    "maker_wait_ttl_s": 5, "pending_ttl_s": 60, "stale_ttl_s": 300, "after_maker_wait": "taker",
    "maker_fee_bps": 60, "taker_fee_bps": 120,
}  # fmt: skip
SIGNAL_ENV = {"SIGNAL_MAX_CANDLE_LAG_S": str(MAX_LAG_S)}
RISK_ENV = {
    "RISK_CAPITAL_USD": str(CAPITAL), "RISK_SUPERVISE_INTERVAL_S": "0.1",
    "RISK_PROPOSAL_MAX_AGE_S": "3600", "CONTROL_API_TOKEN": "parity-control-token-7f3e",
}  # fmt: skip
EXECUTION_ENV = {
    "EXEC_PAPER_LATENCY_MS": str(int(LATENCY.total_seconds() * 1000)),
    "EXEC_TIMER_INTERVAL_S": "0.02", "EXEC_PAPER_BALANCES": f'{{"USD": "{CAPITAL}"}}',
}  # fmt: skip
MARKET_DATA_ENV = {
    "MD_SOURCE": "sim", "MD_CLOSE_DELAY_S": "2", "MD_CANDLE_POLL_MS": "20",
    "MD_BACKFILL_CANDLES": str(BACKFILL), "MD_STALE_AFTER_S": "5",
    "MD_BOOK_INTERVAL_MS": str(BOOK_INTERVAL_MS),
}  # fmt: skip
CONSUMERS = [
    (CandleClosed.STREAM, "signal"), (TradeProposed.STREAM, "risk"),
    (PlaceOrder.STREAM, "execution"), (OrderFilled.STREAM, "risk"),
]  # fmt: skip


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    (target / "strategies.yaml").write_text(yaml.safe_dump(STRATEGIES))
    (target / "policy.yaml").write_text(yaml.safe_dump({"risk": RISK, "execution": EXECUTION}))
    universe = yaml.safe_load((target / "universe.yaml").read_text())
    universe["products"] = [p for p in universe["products"] if p["product_id"] in
                            STRATEGIES["strategies"][0]["products"]]  # fmt: skip
    (target / "universe.yaml").write_text(yaml.safe_dump(universe))
    return target


@pytest.mark.timeout(300)
async def test_the_backtest_proposes_decides_and_fills_as_the_services_do(
    redis_url: str, redis: Redis, bus_keys: BusKeys, pg_url: str, pg_engine: AsyncEngine,
    config_dir: Path, processes: list[ServiceProcess], tmp_path: Path,
) -> None:  # fmt: skip
    upgrade(pg_url)
    await _run_pipeline(redis_url, bus_keys, pg_url, pg_engine, config_dir, processes, redis)
    assert await stray_exits(pg_engine) == [], "risk fired its own exits: widen the stops"
    history = await history_from_stream(redis, bus_keys, MAX_LAG_S, GRANULARITY_S, tmp_path)
    ours = await pipeline_record(redis, bus_keys, pg_engine)
    strategies = build_strategies(load_config(config_dir).strategies)
    start = trade_from(history, strategies, GRANULARITY_S)
    print(f"live from {history.live_from}; the backtest trades from {start}")
    options = BacktestOptions(capital=CAPITAL, latency=LATENCY, trade_from=start)
    theirs = await run_parity_backtest(config_dir, [STRATEGY], history, options)
    _assert_same_proposals_and_decisions(ours, theirs, history)
    _assert_fills_within_the_market(ours, theirs, history)


async def _run_pipeline(
    redis_url: str, keys: BusKeys, pg_url: str, database: AsyncEngine, config_dir: Path,
    processes: list[ServiceProcess], redis: Redis,
) -> None:  # fmt: skip
    """The services over the sim until there is enough to compare, then drained."""
    origin = LiveClock().now().replace(microsecond=0)
    common = {
        "REDIS_URL": redis_url, "BUS_PREFIX": keys.prefix, "CONFIG_DIR": str(config_dir),
        "DATABASE_URL": pg_url, "CLOCK_SPEED": str(SPEED), "CLOCK_ORIGIN": origin.isoformat(),
        "LOG_LEVEL": "INFO", "SHUTDOWN_GRACE_S": "5",
    }  # fmt: skip

    def start(module: str, env: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(module, {**common, **env}).start()
        processes.append(process)
        return process

    clock = ScaledClock(origin, SPEED)
    async with (
        running_sim(clock=clock, sim_history_minutes=60, sim_step_ms=20) as sim,
        rate_limiter_service(redis_url, keys.prefix) as limiter_url,
    ):
        # deciders first, so no live candle waits for a process still starting
        signals = start("services.signal", SIGNAL_ENV)
        risk = start("services.risk", RISK_ENV)
        execution = start("services.execution", EXECUTION_ENV)
        await signals.wait_ready(within=60)
        await risk.wait_ready(within=60)
        await execution.wait_http("/healthz", within=60)
        urls = {"EXCHANGE_SIM_URL": sim.base_url, "RATE_LIMITER_URL": limiter_url}
        market_data = start("services.market_data", {**MARKET_DATA_ENV, **urls})
        await market_data.wait_ready(within=60)
        await execution.wait_ready(within=60)
        wanted = f"{DECISIONS} decisions, {REJECTIONS} of them rejections, {FILLS} fills"
        await eventually(lambda: _enough(database), within=150, what=wanted)
        market_data.signal(signal.SIGTERM)
        assert market_data.wait_exit() == 0
        await eventually(lambda: _settled(redis, keys, database), within=60,
                         what="signal, risk and execution to drain")  # fmt: skip


async def _enough(database: AsyncEngine) -> bool:
    outcomes = select(RiskDecision.outcome, func.count()).group_by(RiskDecision.outcome)
    fills = select(func.count()).select_from(Fill)
    async with database.connect() as connection:
        counted = {outcome: n for outcome, n in await connection.execute(outcomes)}
        filled = int((await connection.execute(fills)).scalar_one())
    rejected = counted.get("REJECTED", 0)
    return sum(counted.values()) >= DECISIONS and rejected >= REJECTIONS and filled >= FILLS


async def _settled(redis: Redis, keys: BusKeys, database: AsyncEngine) -> bool:
    return await drained(redis, keys, CONSUMERS) and await open_intents(database) == 0


def _before(record: Record, rows: list[Any], end: Any) -> list[Any]:
    return [row for row in rows if record.proposal_ends[row[0]] <= end]


def _assert_same_proposals_and_decisions(ours: Record, theirs: Record, history: History) -> None:
    end = history.last_common_end
    proposals = _before(ours, ours.proposals, end)
    assert _before(theirs, theirs.proposals, end) == proposals, _diff(
        "proposals", proposals, _before(theirs, theirs.proposals, end)
    )
    decisions = _before(ours, ours.decisions, end)
    assert _before(theirs, theirs.decisions, end) == decisions, _diff(
        "decisions", decisions, _before(theirs, theirs.decisions, end)
    )
    outcomes = [row[1] for row in decisions]
    enough = len(decisions) >= DECISIONS - 2 and "REJECTED" in outcomes
    assert enough, f"too little to compare: {outcomes}"
    print("decisions, the same in both:", *decisions, sep="\n  ")


def _assert_fills_within_the_market(ours: Record, theirs: Record, history: History) -> None:
    strays = [i for i in theirs.fills if i.startswith(("stop_loss:", "take_profit:"))]
    assert strays == [], f"the backtest fired risk's own exits: {strays}"
    missing = sorted(set(theirs.fills) - set(ours.fills))
    assert missing == [], f"filled in the backtest only: {missing}"
    gaps = fill_gaps(ours.fills, theirs.fills, history, granularity_s=GRANULARITY_S,
                     margin_bps=MARGIN_BPS, book_age=BOOK_AGE)  # fmt: skip
    report = "\n".join(str(gap) for gap in gaps)
    assert len(gaps) >= 2, f"too few intents filled in both runs:\n{report}"
    assert all(gap.gap_bps <= gap.bound_bps for gap in gaps), f"fills too far apart:\n{report}"
    print(f"fill gaps ({len(gaps)} intents):\n{report}")


def _diff(what: str, ours: list[Any], theirs: list[Any]) -> str:
    first = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    lines = [f"{what} differ from #{first} (services {len(ours)}, backtest {len(theirs)}):"]
    lines += [f"  services: {row}" for row in ours[first : first + 4]]
    lines += [f"  backtest: {row}" for row in theirs[first : first + 4]]
    return "\n".join(lines)
