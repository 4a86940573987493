"""What the services did and what the backtest does over the same candles, side by side.

The pipeline's record comes from where the services leave it: proposals from
``signal.proposals``, decisions from ``risk_decisions`` (in the order risk wrote them),
fills from ``fills`` joined to their orders' intents. The backtest runs in-process over
candle files made from ``md.candles``, with observers on its proposals, decisions and
fills. Both records reduce to the same rows, so a comparison is a plain ``==``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.backtest.engine import Backtest, BacktestOptions
from services.backtest.market import candle_time
from services.backtest.run import BacktestSpec, run_backtest
from services.signal.engine import SignalEngine
from services.signal.proposals import actionable
from services.signal.rebuild import candle_of
from services.signal.strategies.base import Strategy
from shared.bus import BusKeys
from shared.candle_files import Candle, write_candles
from shared.config import load_config
from shared.db import Fill, Order, RiskDecision, RiskIntent
from shared.messages import OrderFilled, ProposalDecided, TradeProposed
from shared.slippage import CostModel
from tests.support.market import published_candles
from tests.support.risk import stream_payloads

__all__ = [
    "BPS", "FillGap", "FillRun", "History", "Record", "decision_row", "drained", "fill_gaps",
    "fill_runs", "history_from_stream", "open_intents", "pipeline_record", "proposal_row",
    "run_parity_backtest", "stray_exits", "trade_from",
]  # fmt: skip

BPS = Decimal(10_000)
ProposalRow = tuple[Any, ...]  # proposal id, side, action, quote size, stop loss, take profit
DecisionRow = tuple[Any, ...]  # proposal id, outcome, reasons, approved quote size


@dataclass(frozen=True)
class FillRun:
    """One intent's fills: where they happened and at what volume-weighted price."""

    intent_id: str
    product_id: str
    vwap: Decimal
    first_at: datetime
    last_at: datetime


@dataclass
class Record:
    """One run's proposals and decisions in order, and its fills by intent."""

    proposals: list[ProposalRow] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    fills: dict[str, FillRun] = field(default_factory=dict)
    proposal_ends: dict[str, datetime] = field(default_factory=dict)  # id -> its candle's end


@dataclass(frozen=True)
class History:
    """The 60-second candles market-data published, per product, in files the backtest reads."""

    data: list[tuple[str, Path]]
    candles: dict[str, list[Candle]]
    live_from: dict[str, datetime]  # per product: the end of its first candle signal acted on
    last_common_end: datetime  # the last candle end every product's history reaches


def proposal_row(p: TradeProposed) -> ProposalRow:
    return (p.proposal_id, p.side, p.action, p.quote_size, p.stop_loss, p.take_profit)


def decision_row(d: ProposalDecided) -> DecisionRow:
    return (d.proposal_id, d.outcome.value, tuple(d.reasons), d.approved_quote_size)


def _proposal_end(p: TradeProposed) -> datetime:
    assert p.candle_start is not None and p.granularity_s is not None
    return p.candle_start + timedelta(seconds=p.granularity_s)


def fill_runs(fills: Iterable[tuple[str, str, Decimal, Decimal, datetime]]) -> dict[str, FillRun]:
    """(intent, product, price, size, time) rows grouped into one :class:`FillRun` per intent."""
    grouped: dict[str, list[tuple[str, str, Decimal, Decimal, datetime]]] = defaultdict(list)
    for row in fills:
        grouped[row[0]].append(row)
    runs = {}
    for intent_id, rows in grouped.items():
        size = sum((r[3] for r in rows), Decimal(0))
        vwap = sum((r[2] * r[3] for r in rows), Decimal(0)) / size
        times = [r[4] for r in rows]
        runs[intent_id] = FillRun(intent_id, rows[0][1], vwap, min(times), max(times))
    return runs


@dataclass(frozen=True)
class FillGap:
    """One intent's VWAP in each run, their gap and what the market allowed, in bps."""

    intent_id: str
    pipeline: Decimal
    backtest: Decimal
    gap_bps: Decimal
    bound_bps: Decimal

    def __str__(self) -> str:
        return (f"{self.intent_id}: pipeline {self.pipeline:.2f} backtest {self.backtest:.2f} "
                f"gap {self.gap_bps:.1f} bps, bound {self.bound_bps:.1f} bps")  # fmt: skip


def fill_gaps(
    pipeline: dict[str, FillRun], backtest: dict[str, FillRun], history: History,
    *, granularity_s: int, margin_bps: Decimal, book_age: timedelta,
) -> list[FillGap]:  # fmt: skip
    """For each intent filled in both: the VWAP gap against the bound the candles give.

    The bound is the range (highest high less lowest low) of the candles spanning both
    runs' fills, from ``book_age`` before the first (the paper venue may fill on a book
    that old), plus ``margin_bps`` for the spread and the levels a print walks.
    """
    gaps = []
    for intent_id in sorted(set(pipeline) & set(backtest)):
        ours, theirs = pipeline[intent_id], backtest[intent_id]
        start = min(ours.first_at, theirs.first_at) - book_age
        end = max(ours.last_at, theirs.last_at)
        span = [
            c for c in history.candles[ours.product_id]
            if candle_time(c.start) <= end and candle_time(c.start + granularity_s) > start
        ]  # fmt: skip
        assert span, f"{intent_id}: no candle covers its fills ({start} .. {end})"
        reference = theirs.vwap
        market = (max(c.high for c in span) - min(c.low for c in span)) / reference * BPS
        gap = abs(ours.vwap - theirs.vwap) / reference * BPS
        gaps.append(FillGap(intent_id, ours.vwap, theirs.vwap, gap, market + margin_bps))
    return gaps


# --- the pipeline ---------------------------------------------------------------------


async def pipeline_record(redis: Redis, keys: BusKeys, database: AsyncEngine) -> Record:
    record = Record()
    for payload in await stream_payloads(redis, keys, TradeProposed.STREAM):
        assert isinstance(payload, TradeProposed)
        record.proposals.append(proposal_row(payload))
        record.proposal_ends[payload.proposal_id] = _proposal_end(payload)
    decided = select(
        RiskDecision.proposal_id, RiskDecision.outcome, RiskDecision.reasons,
        RiskDecision.approved_quote_size,
    ).order_by(RiskDecision.id)  # fmt: skip
    filled = (
        select(Order.intent_id, Fill.product_id, Fill.price, Fill.size, Fill.filled_at)
        .join(Order, Order.client_order_id == Fill.client_order_id)
        .order_by(Fill.id)
    )
    async with database.connect() as connection:
        for proposal_id, outcome, reasons, approved in await connection.execute(decided):
            record.decisions.append((proposal_id, outcome, tuple(reasons), approved))
        record.fills = fill_runs(tuple(row) for row in await connection.execute(filled))
    return record


async def drained(redis: Redis, keys: BusKeys, routes: Sequence[tuple[str, str]]) -> bool:
    """Every (stream, group) has delivered and acknowledged everything."""
    for stream, group in routes:
        try:
            groups = {g["name"].decode(): g for g in await redis.xinfo_groups(keys.stream(stream))}
        except ResponseError:  # no such stream: nothing was ever published there
            continue
        state = groups.get(group)
        if state is None or state["lag"] != 0 or state["pending"] != 0:
            return False
    return True


async def open_intents(database: AsyncEngine) -> int:
    """Intents risk issued and has not yet seen finished."""
    query = select(func.count()).select_from(RiskIntent).where(RiskIntent.finished_at.is_(None))
    async with database.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def stray_exits(database: AsyncEngine) -> list[str]:
    """Exits risk fired by itself (stop-loss, take-profit): none should in this run."""
    query = select(RiskIntent.intent_id).where(
        or_(RiskIntent.intent_id.like("stop_loss:%"), RiskIntent.intent_id.like("take_profit:%"))
    )
    async with database.connect() as connection:
        return [row[0] for row in await connection.execute(query)]


async def history_from_stream(
    redis: Redis, keys: BusKeys, max_lag_s: float, granularity_s: int, out_dir: Path
) -> History:
    """Candle files of what ``md.candles`` carried, and where each product's live candles begin.

    Signal acts on a candle only if it was published within ``max_lag_s`` of its end. Per
    product, the first such candle must be followed only by such candles, or no
    ``trade_from`` could describe what signal did.
    """
    candles: dict[str, list[Candle]] = defaultdict(list)
    live: dict[str, list[bool]] = defaultdict(list)
    for _entry, envelope, closed in await published_candles(redis, keys):
        if closed.granularity_s != granularity_s:
            continue
        candles[closed.product_id].append(candle_of(closed))
        live[closed.product_id].append(actionable(closed, envelope.origin_ts, max_lag_s))
    live_from = {}
    for product_id, flags in live.items():
        assert flags == sorted(flags), f"{product_id}: a history candle after a live one: {flags}"
        assert flags[-1], f"{product_id}: no candle was published live"
        first = candles[product_id][flags.index(True)]
        live_from[product_id] = candle_time(first.start + granularity_s)
    data = []
    for product_id, rows in sorted(candles.items()):
        path = out_dir / f"{product_id}.csv"
        write_candles(path, rows)
        data.append((product_id, path))
    last_common = min(candle_time(rows[-1].start + granularity_s) for rows in candles.values())
    return History(data, dict(candles), live_from, last_common)


def trade_from(history: History, strategies: Sequence[Strategy], granularity_s: int) -> datetime:
    """The one ``trade_from`` that makes the backtest act where signal did.

    Products may go live one candle apart: market-data publishes each product's start-up
    candles with its own REST call, so the last one can fall either side of signal's lag
    for one product and not the other. The backtest acts from the earliest product's
    first live candle; a candle it then acts on that signal treated as history (the
    later product's last start-up candle) must cause no signal, or the runs are not
    comparable. The moment sits half a candle before that first live candle's end, so it
    is the same whichever side of its own boundary ``trade_from`` falls on.
    """
    start = min(history.live_from.values())
    engine = SignalEngine(strategies)
    for product_id, rows in history.candles.items():
        for candle in rows:
            signals = engine.on_candle(product_id, granularity_s, candle)
            end = candle_time(candle.start + granularity_s)
            disputed = start <= end < history.live_from[product_id]
            assert not (disputed and signals), (
                f"{product_id}: the candle ending {end} was history for signal but not for a "
                f"backtest trading from {start}, and it signals: {signals}"
            )
    return start - timedelta(seconds=granularity_s / 2)


# --- the backtest ---------------------------------------------------------------------


async def run_parity_backtest(
    config_dir: Path, strategies: Sequence[str], history: History, options: BacktestOptions
) -> Record:
    """The backtest over ``history`` with the fill model closest to the paper venue's."""
    config = load_config(config_dir)
    cost = CostModel.from_config(config.universe, config.policy.execution).without_slippage()
    record = Record()
    fills: list[tuple[str, str, Decimal, Decimal, datetime]] = []

    def on_proposal(p: TradeProposed) -> None:
        record.proposals.append(proposal_row(p))
        record.proposal_ends[p.proposal_id] = _proposal_end(p)

    def on_fill(f: OrderFilled) -> None:
        fills.append((f.intent_id, f.product_id, f.price, f.size, f.filled_at))

    def prepare(backtest: Backtest) -> None:
        backtest.observers.proposal.append(on_proposal)
        backtest.observers.decision.append(lambda d: record.decisions.append(decision_row(d)))
        backtest.observers.fill.append(on_fill)

    spec = BacktestSpec(config=config, strategy_names=list(strategies), data=history.data,
                        cost=cost, options=options)  # fmt: skip
    await run_backtest(spec, prepare=prepare)
    record.fills = fill_runs(fills)
    return record
