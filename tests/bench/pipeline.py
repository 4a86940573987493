"""Market data to order through the four services as processes, at a fixed tick rate.

pipeline: market-data, signal, risk and execution (PAPER) run as real processes on the
          real Redis and Postgres, with the rate limiter and exchange-sim (its REST
          product catalog only) beside them. Market-data's Coinbase WebSocket is a local
          feed (:class:`PacedFeed`) that sends ``RATE`` frames a second on a fixed
          schedule, each one tick on ``md.ticks`` (a new best bid or ask, or a trade at
          a new price), for ``WINDOW_S`` seconds after a warm-up.
          Orders come from closed candles: no strategy proposes on ticks (the engine's
          tick signals are not published), so the chain is candle -> proposal ->
          decision and order -> execution, while every tick loads market-data and the
          tick consumers of signal, risk and execution. To close candles often, every
          process runs on the scaled clock ``make paper`` uses (``CLOCK_SPEED``), at
          ``SPEED``: a one-minute candle of each product every 100 ms of wall time. The
          feed's prices swing in waves a few candles long, so an EMA(2)/EMA(3)
          crossover proposes about every third candle, and a wide-open risk policy
          approves what it can (exits of positions not yet filled are refused).
          Latency, in wall time: from the candle's ``origin_ts``, which market-data
          stamps as it publishes the candle (not when the trade that closed its bucket
          arrived: a bucket closes on market-data's candle pass, ``close_delay_s`` after
          its end), to the envelope of the first order's PENDING report, which execution
          publishes just before it hands the order to the venue. ``venue_mean_ms`` is
          execution's own ``execution_order_latency_seconds`` over the window, observed
          at the hand-over itself: its mean, next to ours, shows what that report's
          round trip leaves out. Per stage (p50, p99): candle to proposal (signal), proposal
          to order (risk), order to PENDING report (execution). The candles of all
          products close on one candle pass, so an order can wait behind another of the
          same pass in each service: ``first_p50_ms`` and ``first_p99_ms`` are of the
          order risk issued first on each pass, which no order of its pass went ahead
          of in risk or execution.
floor:    right after, the services stopped, at the same rate: four bare stream hops
          (XADD, then XREADGROUP by the next process, which XADDs to the next stream...),
          one process a hop, timed from before the first XADD to the last read; its p50.
          The pipeline itself crosses three streams (md.candles, signal.proposals,
          risk.orders). ``sparse_floor_ms``: the same hops at ``SPARSE_RATE`` entries a
          second, about the orders' own rate, where each process has idled between
          entries as the services have between orders (not the goal's floor: shown
          beside it).
memory:   every service process's resident memory (VmRSS), sampled four times a second
          from start to end of the run; the largest, and each service's. exchange-sim
          (the stand-in for Coinbase) is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import uvloop
import yaml
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from services.execution.orders import client_order_id
from shared.bus import ENVELOPE_FIELD, BusKeys, create_redis
from shared.clock import LiveClock, ScaledClock
from shared.config import load_config
from shared.db import upgrade
from shared.messages import (
    CandleClosed,
    OrderStatus,
    OrderUpdated,
    PlaceOrder,
    TickUpdated,
    TradeProposed,
    decode,
)
from tests.bench.feed import PacedFeed
from tests.bench.floor import floor_hops
from tests.e2e.process import ROOT, ServiceProcess

__all__ = ["run"]

RATE = 500  # frames (ticks) a second
WARMUP_S = 5.0
WINDOW_S = 30.0
DRAIN_S = 1.5  # after the window: candles of its last moments still become orders
FLOOR_S = 10.0
SPARSE_RATE = 12  # entries a second: about the rate orders flow at here
SPARSE_FLOOR_S = 15.0
SPEED = 600.0  # the services' clock (CLOCK_SPEED): a one-minute candle every 100 ms
# A bucket waits this long (market time) for its product's next trade before it is
# closed; shorter, and it would close before the trade that proves it complete.
CLOSE_DELAY_S = 30
# Signal's candle lag and risk's proposal age, in market time: never the reason an order
# is missing from the sample, however slow a stage is.
MAX_AGE_S = 3600
PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD", "AVAX-USD")
HOPS = 4
GOAL_P99_MS = 10.0
GOAL_P50_OVER_FLOOR = 5.0
GOAL_RSS_MB = 120.0
PIPELINE = ("market-data", "signal", "risk", "execution")
PASS_NS = 30_000_000  # candles published this close together closed on one candle pass
STRATEGIES = {"strategies": [
    {"name": "bench_waves", "kind": "ema_cross", "products": list(PRODUCTS),
     "granularity_s": 60, "quote_size_usd": 100,
     # stops this far away never fire: every exit is the crossover's
     "params": {"fast_period": 2, "slow_period": 3, "atr_period": 2,
                "atr_stop_multiple": 20, "reward_risk_ratio": 20}},
]}  # fmt: skip
RISK = {
    "stop_loss_pct": 50, "take_profit_pct": 500, "max_open_trades": 500,
    "max_trades_per_hour": 100_000, "max_trades_per_day": 1_000_000,
    "hourly_budget_usd": 10**9, "daily_budget_usd": 10**10, "new_trade_cooldown_s": 0,
    "daily_loss_limit_pct": 50, "max_drawdown_pct": 50,
}  # fmt: skip
CAPITAL_USD = "1000000"


# --- resident memory ----------------------------------------------------------------------


class RssSampler:
    """The largest VmRSS seen of each process, sampled until stopped."""

    def __init__(self, processes: dict[str, ServiceProcess], interval_s: float = 0.25) -> None:
        self._processes = processes
        self._interval_s = interval_s
        self.peak_mb = dict.fromkeys(processes, 0.0)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            for name, service in self._processes.items():
                rss = _rss_mb(service)
                if rss is not None:
                    self.peak_mb[name] = max(self.peak_mb[name], rss)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval_s)

    def stop(self) -> None:
        self._stop.set()


def _cpu_s(service: ServiceProcess) -> float:
    """CPU seconds (user and system) the process has used so far."""
    assert service.process is not None
    fields = Path(f"/proc/{service.process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int]:
    """Busy and total jiffies of every core so far (/proc/stat; guest time is already
    counted as user time, so it is left out)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def _rss_mb(service: ServiceProcess) -> float | None:
    if service.process is None:
        return None
    try:
        status = Path(f"/proc/{service.process.pid}/status").read_text()
    except OSError:
        return None  # it has exited
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


# --- what the streams say ----------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """One order's way through the services: envelope times, wall-clock ns."""

    candle: int  # origin_ts: market-data published the candle
    proposal: int  # signal published the proposal
    order: int  # risk published the order
    submitted: int  # execution published the first order's PENDING report

    @property
    def total(self) -> float:
        return (self.submitted - self.candle) / 1e9


async def _envelopes(redis: Redis, stream: str) -> list[Any]:
    entries: Any = await redis.xrange(stream)
    return [decode(fields[ENVELOPE_FIELD.encode()]) for _entry_id, fields in entries]


async def chains(redis: Redis, keys: BusKeys, origin: datetime) -> list[Chain]:
    """Every order that went to the venue, traced back to its candle; the times of the
    services' clock (``SPEED`` times the wall's from ``origin``) turned back into the wall's.

    Checks on the way that origin_ts is what this benchmark says it is: a candle's is
    the moment market-data published it, and signal and risk pass it on unchanged.
    """
    candles = await _envelopes(redis, keys.stream(CandleClosed.STREAM))
    published = {envelope.origin_ts for envelope in candles}
    assert all(e.origin_ts == e.ts for e in candles), "a candle's origin_ts is not its publish"
    proposals = {e.id: e for e in await _envelopes(redis, keys.stream(TradeProposed.STREAM))}
    assert all(e.origin_ts in published for e in proposals.values()), "a proposal lost its origin"
    orders = {}
    for envelope in await _envelopes(redis, keys.stream(PlaceOrder.STREAM)):
        if isinstance(envelope.data, PlaceOrder):
            orders[envelope.data.intent_id] = (envelope, envelope.data.proposal_id)
    found = []
    for report in await _envelopes(redis, keys.stream(OrderUpdated.STREAM)):
        data = report.data
        if not isinstance(data, OrderUpdated) or data.status is not OrderStatus.PENDING:
            continue
        order, proposal_id = orders.get(data.intent_id, (None, None))
        if order is None or data.client_order_id != client_order_id(data.intent_id, 0):
            continue
        proposal = proposals.get(proposal_id or "")
        if proposal is None:
            continue  # a stop or flatten exit: not a candle's order
        assert report.origin_ts == order.origin_ts == proposal.origin_ts
        stamps = (proposal.origin_ts, proposal.ts, order.ts, report.ts)
        found.append(Chain(*(_wall_ns(origin, stamp) for stamp in stamps)))
    return found


def _wall_ns(origin: datetime, clock_ns: int) -> int:
    """The wall-clock moment the services' clock read as ``clock_ns``."""
    origin_ns = int(origin.timestamp()) * 1_000_000_000
    return origin_ns + round((clock_ns - origin_ns) / SPEED)


async def _ticks_in(redis: Redis, keys: BusKeys, start_ns: int, end_ns: int) -> int:
    """md.ticks entries added in the window (entry ids are Redis' milliseconds)."""
    entries: Any = await redis.xrange(
        keys.stream(TickUpdated.STREAM), f"{start_ns // 1_000_000}", f"{end_ns // 1_000_000}"
    )
    return len(entries)


# --- the run ------------------------------------------------------------------------------


def bench_config(target: Path) -> Path:
    """config/ with the wave strategy on ``PRODUCTS`` and a risk policy that lets it trade."""
    shutil.copytree(ROOT / "config", target)
    (target / "strategies.yaml").write_text(yaml.safe_dump(STRATEGIES))
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["risk"].update(RISK)
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    universe = yaml.safe_load((target / "universe.yaml").read_text())
    universe["products"] = [p for p in universe["products"] if p["product_id"] in PRODUCTS]
    (target / "universe.yaml").write_text(yaml.safe_dump(universe))
    load_config(target)  # fails here, not in four processes, if the policy is invalid
    return target


@contextlib.contextmanager
def _schema(database_url: str) -> Iterator[str]:
    """A Postgres schema of the run's own, migrated; yields a URL that sees only it."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'create schema "{schema}"')
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(f'drop schema "{schema}" cascade')


@dataclass
class Figures:
    chains: list[Chain]
    ticks: int
    rss_mb: dict[str, float]
    cpu: dict[str, float]  # each service's CPU in the window, in cores
    machine_busy: float  # of every core, in the window, whatever ran
    venue_mean_s: float  # execution's own origin-to-venue mean over the window, wall seconds
    floor: list[float] = field(default_factory=list)  # seconds per entry through the hops
    sparse_floor: list[float] = field(default_factory=list)  # the same at SPARSE_RATE


async def _measure(redis_url: str, database_url: str, config_dir: Path) -> Figures:
    """The pipeline with its services, then (they stopped) the floor."""
    keys = BusKeys(prefix=f"bench-{uuid.uuid4().hex[:8]}:")
    redis = create_redis(redis_url)
    try:
        figures = await _pipeline(redis, keys, redis_url, database_url, config_dir)
        figures.floor = await floor_hops(
            redis, keys, redis_url, hops=HOPS, rate=RATE, seconds=FLOOR_S
        )
        sparse_keys = BusKeys(prefix=f"{keys.prefix}sparse:")
        figures.sparse_floor = await floor_hops(
            redis, sparse_keys, redis_url, hops=HOPS, rate=SPARSE_RATE, seconds=SPARSE_FLOOR_S
        )
        return figures
    finally:
        async for key in redis.scan_iter(match=f"{keys.prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()


async def _pipeline(
    redis: Redis, keys: BusKeys, redis_url: str, database_url: str, config_dir: Path
) -> Figures:
    origin = LiveClock().now().replace(microsecond=0)
    clock = ScaledClock(origin, SPEED)
    common = {
        "REDIS_URL": redis_url, "BUS_PREFIX": keys.prefix, "CONFIG_DIR": str(config_dir),
        "CLOCK_SPEED": str(SPEED), "CLOCK_ORIGIN": origin.isoformat(),
    }  # fmt: skip
    started: dict[str, ServiceProcess] = {}

    def start(name: str, module: str, env: dict[str, str]) -> ServiceProcess:
        started[name] = ServiceProcess(module, {**common, **env}).start()
        return started[name]

    try:
        limiter = start("rate-limiter", "services.rate_limiter", {})
        sim = start("exchange-sim", "services.exchange_sim", {
            "SIM_PRODUCTS": ",".join(PRODUCTS), "SIM_STEP_MS": "10000",
            "SIM_HISTORY_MINUTES": "0",
        })  # fmt: skip
        await asyncio.gather(limiter.wait_ready(), sim.wait_ready())
        async with PacedFeed(PRODUCTS, RATE, clock) as feed:
            stores = {"DATABASE_URL": database_url}
            start("market-data", "services.market_data", {
                "MD_SOURCE": "coinbase", "COINBASE_REST_URL": sim.base_url,
                "COINBASE_WS_URL": feed.url, "RATE_LIMITER_URL": limiter.base_url,
                "MD_BACKFILL_CANDLES": "0", "MD_CLOSE_DELAY_S": str(CLOSE_DELAY_S),
            })  # fmt: skip
            start("signal", "services.signal", {"SIGNAL_MAX_CANDLE_LAG_S": str(MAX_AGE_S)})
            start("risk", "services.risk", {
                **stores, "RISK_CAPITAL_USD": CAPITAL_USD,
                "RISK_PROPOSAL_MAX_AGE_S": str(MAX_AGE_S),
            })  # fmt: skip
            start("execution", "services.execution", {
                **stores, "TRADING_MODE": "PAPER",
                "EXEC_PAPER_BALANCES": orjson.dumps({"USD": CAPITAL_USD}).decode(),
            })  # fmt: skip
            sampler = RssSampler({n: s for n, s in started.items() if n != "exchange-sim"})
            sampling = asyncio.create_task(sampler.run())
            await asyncio.gather(*(started[name].wait_ready(60) for name in PIPELINE))
            await asyncio.sleep(WARMUP_S)
            execution = started["execution"]
            histogram_before = await _order_latency(execution)
            start_ns, cpu_before, machine_before = time.time_ns(), _cpu(started), _machine_busy()
            await asyncio.sleep(WINDOW_S)
            end_ns, cpu_after, machine_after = time.time_ns(), _cpu(started), _machine_busy()
            histogram_after = await _order_latency(execution)
            await asyncio.sleep(DRAIN_S)
            feed.pause()
            sampler.stop()
            await sampling
            for name, service in started.items():
                if service.process is not None and service.process.poll() is not None:
                    raise RuntimeError(f"{name} exited during the run:\n{service.log()}")
    finally:
        for service in started.values():
            service.stop()
    found = [c for c in await chains(redis, keys, origin) if start_ns <= c.candle < end_ns]
    busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
    seconds = histogram_after[0] - histogram_before[0]
    count = histogram_after[1] - histogram_before[1]
    return Figures(
        chains=found, ticks=await _ticks_in(redis, keys, start_ns, end_ns),
        rss_mb=sampler.peak_mb, machine_busy=busy, venue_mean_s=seconds / count / SPEED,
        cpu={name: (cpu_after[name] - cpu_before[name]) / WINDOW_S for name in cpu_after},
    )  # fmt: skip


async def _order_latency(execution: ServiceProcess) -> tuple[float, int]:
    """Sum and count of execution's own histogram of origin_ts to the first order's
    ``venue.send`` (in the services' clock), over every kind."""
    text = (await execution.get("/metrics")).text
    total, count = 0.0, 0
    for family in text_string_to_metric_families(text):
        if family.name == "execution_order_latency_seconds":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += int(sample.value)
    return total, count


def _cpu(services: dict[str, ServiceProcess]) -> dict[str, float]:
    return {name: _cpu_s(service) for name, service in services.items()}


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def first_of_pass(chains: Sequence[Chain]) -> list[Chain]:
    """Of the orders whose candles closed on one candle pass, the one risk issued first:
    no order of its pass went ahead of it in risk or execution. (Signal may still have
    proposed for another product first, and a proposal risk refused costs time too.)"""
    passes: list[list[Chain]] = []
    for chain in sorted(chains, key=lambda c: c.candle):
        if passes and chain.candle - passes[-1][0].candle < PASS_NS:
            passes[-1].append(chain)
        else:
            passes.append([chain])
    return [min(orders, key=lambda c: c.order) for orders in passes]


def _pipeline_line(figures: Figures) -> str:
    found = figures.chains
    if not found:
        raise RuntimeError("no order reached the venue in the window")
    ms = [c.total * 1e3 for c in found]
    p50, p99 = _percentile(ms, 0.5), _percentile(ms, 0.99)
    mean = sum(ms) / len(ms)
    floor = _percentile(figures.floor, 0.5) * 1e3
    first = [c.total * 1e3 for c in first_of_pass(found)]

    def stage(start: Callable[[Chain], int], end: Callable[[Chain], int], at: float = 0.5) -> float:
        return _percentile([(end(c) - start(c)) / 1e6 for c in found], at)

    signal = (lambda c: c.candle, lambda c: c.proposal)
    risk = (lambda c: c.proposal, lambda c: c.order)
    execution = (lambda c: c.order, lambda c: c.submitted)

    return (
        f"BENCH pipeline ticks_per_s={figures.ticks / WINDOW_S:.0f} p50_ms={p50:.2f} "
        f"p99_ms={p99:.2f} floor_ms={floor:.2f} orders={len(found)} seconds={WINDOW_S:.0f} "
        f"signal_p50_ms={stage(*signal):.2f} risk_p50_ms={stage(*risk):.2f} "
        f"execution_p50_ms={stage(*execution):.2f} "
        f"first_p50_ms={_percentile(first, 0.5):.2f} first_p99_ms={_percentile(first, 0.99):.2f} "
        f"floor_p99_ms={_percentile(figures.floor, 0.99) * 1e3:.2f} "
        f"sparse_floor_ms={_percentile(figures.sparse_floor, 0.5) * 1e3:.2f} mean_ms={mean:.2f} "
        f"signal_p99_ms={stage(*signal, 0.99):.2f} risk_p99_ms={stage(*risk, 0.99):.2f} "
        f"execution_p99_ms={stage(*execution, 0.99):.2f} "
        f"venue_mean_ms={figures.venue_mean_s * 1e3:.2f} "
        f"p50_over_floor={p50 / floor:.1f} "
        f"services_cpu_pct={sum(figures.cpu[name] for name in PIPELINE) * 100:.0f} "
        f"machine_busy_pct={figures.machine_busy * 100:.0f} "
        f"goal_p99_met={_yes(p99 < GOAL_P99_MS)} "
        f"goal_p50_met={_yes(p50 <= GOAL_P50_OVER_FLOOR * floor)}"
    )


def _memory_line(figures: Figures) -> str:
    peaks = figures.rss_mb
    largest = max(peaks, key=lambda name: peaks[name])
    each = " ".join(f"{name.replace('-', '_')}={mb:.0f}" for name, mb in peaks.items())
    return (
        f"BENCH memory rss_mb_max={peaks[largest]:.0f} service={largest} {each} "
        f"goal_met={_yes(peaks[largest] < GOAL_RSS_MB)}"
    )


def run(redis_url: str, database_url: str) -> list[str]:
    """The ``pipeline`` and ``memory`` lines."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-pipeline-") as directory,
        _schema(database_url) as url,
    ):
        config_dir = bench_config(Path(directory) / "config")
        figures = uvloop.run(_measure(redis_url, url, config_dir))
    return [_pipeline_line(figures), _memory_line(figures)]
