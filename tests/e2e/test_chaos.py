"""The whole stack trading LIVE on exchange-sim while it is hurt, and nothing is lost.

``python -m deploy.local --live-on-sim`` runs every service as compose would, in LIVE:
execution places real orders on exchange-sim, which keeps its own book of orders and
fills, the ground truth here. Its market zig-zags every minute, so a fast EMA crossover
enters or exits on every candle of every product. While it trades, a seeded schedule:

- kills a service with SIGKILL every few seconds, in rounds that each take the five
  (market-data, signal, risk, execution, rate-limiter) in a random order; a service the
  stack is still restarting is waited for, so every kill lands on a running process;
- kills Redis (append-only file on) and starts it again on the same files;
- stops Postgres for ``CHAOS_PG_OUTAGE_S`` seconds;
- has exchange-sim answer 429s and 503s from the start until the services have met three
  of each, drop six level2 messages in a row (a sequence gap), fail or hang the next four
  create-orders, after and before taking them, whenever they come, and drop every
  WebSocket connection halfway through the kills.

Then, with the faults gone, trading must resume by itself; after a pause, every intent
risk issued must finish, and the records must agree with the venue's:

- every kill landed, and every fault asked for was met (exchange-sim counts them; the
  gap is in market-data's log);
- no intent lost: every intent risk issued reaches a final status;
- no venue order duplicated: one venue order per client order id, each one ours, and no
  intent filled beyond its size;
- every venue fill in Postgres exactly once, with its size and price;
- risk's positions equal the positions the venue's fills add up to;
- neither the API secret, nor the control token, nor the database password appears in
  the stack's log, its metrics, or any status or error answer.

``make test`` runs a short schedule (``CHAOS_KILLS`` 6, a 10 s Postgres outage);
``make chaos`` the long one: 24 kills and a 30 s outage, seed ``CHAOS_SEED`` 20261124.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from deploy.local.compose import ROOT
from deploy.local.servers import (
    PostgresServer,
    RedisServer,
    postgres_binaries,
    redis_binary,
)
from services.risk.ctl import ControlAuth
from shared.candle_files import Candle, write_candles
from shared.clock import LiveClock
from shared.coinbase.auth import CdpCredentials
from shared.coinbase.rest import CoinbaseRest
from shared.db import Fill, Order, RiskIntent
from tests.support.polling import eventually
from tests.support.secrets import everything_served, leaked, pem_lines, with_password
from tests.support.stack_config import trading_config
from tests.support.venue import CdpTestKey

SEED = int(os.environ.get("CHAOS_SEED", "20261124"))
KILLS = int(os.environ.get("CHAOS_KILLS", "6"))
PG_OUTAGE_S = float(os.environ.get("CHAOS_PG_OUTAGE_S", "10"))
VICTIMS = {  # service -> the module its process runs
    "market-data": "services.market_data", "signal": "services.signal",
    "risk": "services.risk", "execution": "services.execution",
    "rate-limiter": "services.rate_limiter",
}  # fmt: skip
PRODUCTS = {"BTC-USD": 60_000, "ETH-USD": 3_000, "SOL-USD": 150}
TOKEN = "chaos-control-token-5e0c2b7a91"
STRATEGIES = {"strategies": [
    {"name": "zigzag", "kind": "ema_cross", "products": list(PRODUCTS), "granularity_s": 60,
     "quote_size_usd": 50,
     "params": {"fast_period": 2, "slow_period": 3, "atr_period": 3, "atr_stop_multiple": 20,
                "reward_risk_ratio": 20}},
]}  # fmt: skip
RISK = {
    "default_asset_cap_pct": 10, "stop_loss_pct": 50, "take_profit_pct": 500,
    "max_open_trades": 9, "max_trades_per_hour": 1000, "max_trades_per_day": 10000,
    "hourly_budget_usd": 1_000_000, "daily_budget_usd": 1_000_000, "new_trade_cooldown_s": 0,
    "dust_threshold_usd": 1, "min_trade_usd": 10, "daily_loss_limit_pct": 50,
    "max_drawdown_pct": 50,
}  # fmt: skip
FINAL_STATUSES = {"FILLED", "CANCELLED", "EXPIRED", "FAILED", "REJECTED"}
PASSWORD = "chaos-pg-password-41d7a0"
CREATE_ORDER_FAULTS = [
    "timeout_after_accept", "timeout_before_accept", "error_after_accept", "error_before_accept",
]  # fmt: skip
WS_DROPS = 6  # level2 messages lost in a row: a sequence gap
RATE_FAULTS = 3  # 429s, and 503s, the services must meet before the storm ends


@dataclass
class Chaos:
    """What the schedule did, for the checks and the failure message."""

    rng: random.Random
    events: list[str] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)

    def note(self, event: str) -> None:
        self.events.append(event)


def _config(tmp_path: Path) -> Path:
    return trading_config(tmp_path, STRATEGIES, RISK, PRODUCTS)


def _history(directory: Path, minutes: int = 600) -> Path:
    """One-minute candles whose closes alternate 1% above and below a level: a fast EMA
    crosses a slow one on every candle, so every minute brings an entry or an exit."""
    directory.mkdir()
    for product_id, base in PRODUCTS.items():
        candles, level = [], Decimal(base)
        for minute in range(minutes):
            up = minute % 2 == 0
            open_ = level * (Decimal("0.99") if up else Decimal("1.01"))
            close = level * (Decimal("1.01") if up else Decimal("0.99"))
            low, high = min(open_, close), max(open_, close)
            candles.append(Candle(1_767_225_600 + 60 * minute, low, high, open_.quantize(
                Decimal("0.01")), close.quantize(Decimal("0.01")), Decimal(50)))  # fmt: skip
        write_candles(directory / f"{product_id}.csv", candles)
    return directory


def _children(parent: int) -> Iterator[tuple[int, str]]:
    """(pid, command line) of each live child of ``parent``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            yield int(entry.name), cmdline


def _pid_of(stack_pid: int, module: str) -> int | None:
    for pid, cmdline in _children(stack_pid):
        if f"-m {module}" in cmdline:
            return pid
    return None


@pytest.mark.timeout(1200)
async def test_kills_outages_and_venue_faults_lose_nothing(tmp_path: Path) -> None:
    assert KILLS >= len(VICTIMS), f"CHAOS_KILLS={KILLS} would leave a service never killed"
    redis_server = RedisServer(redis_binary(), appendonly=True).start()
    initdb, pg_ctl = postgres_binaries()
    pg_server = PostgresServer(initdb, pg_ctl).start()
    key = CdpTestKey.generate("chaos")
    state_file, log_path = tmp_path / "state.json", tmp_path / "stack.log"
    env = {**os.environ, "CONTROL_API_TOKEN": TOKEN, "SIM_PRODUCTS": ",".join(PRODUCTS),
           "SIM_REPLAY_WARMUP_CANDLES": "10",  # the strategy trades from the first candle
           "CB_API_KEY": key.name, "CB_API_SECRET": key.private_pem}  # fmt: skip
    command = [
        sys.executable, "-m", "deploy.local", "--live-on-sim", "--free-ports",
        "--history", str(_history(tmp_path / "replay")), "--config-dir", str(_config(tmp_path)),
        "--redis-url", redis_server.url, "--database-url", pg_server.url,
        "--state-file", str(state_file),
    ]  # fmt: skip
    database_url, secrets = with_password(pg_server.url, PASSWORD)
    command[command.index("--database-url") + 1] = database_url
    secrets |= {"control token": TOKEN, **pem_lines("API secret", key.private_pem)}
    stack = _launch(command, env, log_path)
    database = create_async_engine(  # pre-ping: the test outlives a Postgres restart
        pg_server.url.replace("postgresql://", "postgresql+psycopg://"), pool_pre_ping=True
    )
    chaos = Chaos(random.Random(SEED))
    try:
        await eventually(lambda: _up(stack, state_file), within=120, what="the stack")
        services = json.loads(state_file.read_text())
        await eventually(lambda: _fills(database, 2), within=180, what="the first fills")
        sim = services["exchange-sim"]["url"]
        await _hurt(chaos, stack.pid, sim, redis_server, pg_server)
        assert sum(chaos.kills.values()) == KILLS and set(chaos.kills) == set(VICTIMS), (
            f"kills that landed: {dict(chaos.kills)}"
        )
        await eventually(lambda: _venue_faults_met(sim, chaos), within=240,
                         what="the services meeting every fault asked of the venue")  # fmt: skip
        await eventually(lambda: _all_ready(services), within=120, what="every service ready")
        before = len(await _our_fills(database))
        await eventually(lambda: _fills(database, before + 2), within=240,
                         what="trading resuming by itself")  # fmt: skip
        await _pause(services["risk"]["url"])
        await eventually(lambda: _all_intents_final(database), within=180,
                         what="every intent risk issued to finish")  # fmt: skip
        log = await asyncio.to_thread(log_path.read_text, errors="replace")
        assert "ws sequence gap" in log, "market-data saw no sequence gap"
        await _check_against_the_venue(services, database, key)
        said = log + await everything_served(services, ControlAuth(TOKEN, "chaos"))
        assert leaked(secrets, said) == [], "a secret reached a log line, a metric or an answer"
    except (AssertionError, TimeoutError) as exc:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-120:])
        raise AssertionError(
            f"{exc}\nseed {SEED}; what the schedule did: {chaos.events}\n"
            f"--- the stack's log, last lines ---\n{tail}"
        ) from None
    finally:
        await database.dispose()
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill()
        redis_server.stop()
        pg_server.stop()


async def _hurt(
    chaos: Chaos, stack_pid: int, sim: str, redis_server: RedisServer, pg_server: PostgresServer
) -> None:
    """The seeded schedule: ``KILLS`` kills, with Redis killed after a third of them,
    Postgres stopped after two thirds, the venue's WebSocket connections dropped after half,
    and the venue misbehaving from the start until every fault has been met (see
    :func:`_venue_faults_met`), however long that takes."""
    rng = chaos.rng
    async with httpx.AsyncClient(base_url=sim, timeout=10) as client:
        faults = {
            "error_rate": 0.15, "throttle_rate": 0.25, "hang_s": 12, "ws_drop_next": WS_DROPS,
            "create_order": rng.sample(CREATE_ORDER_FAULTS, len(CREATE_ORDER_FAULTS)),
        }  # fmt: skip
        (await client.put("/sim/faults", json=faults)).raise_for_status()
        chaos.note(f"venue faults {faults}")
        for kill, victim in enumerate(_kill_order(rng, KILLS), 1):
            await asyncio.sleep(rng.uniform(2.0, 5.0))
            pid = await _running(stack_pid, VICTIMS[victim])
            os.kill(pid, signal.SIGKILL)
            chaos.kills[victim] += 1
            chaos.note(f"kill -9 {victim} ({pid})")
            if kill == max(1, KILLS // 2):
                (await client.post("/sim/ws/disconnect")).raise_for_status()
                chaos.note("WebSocket connections dropped")
            if kill == max(1, KILLS // 3):
                redis_server.kill()
                await asyncio.sleep(1)
                await asyncio.to_thread(redis_server.start)
                chaos.note("redis killed and restarted from its append-only file")
            if kill == max(1, 2 * KILLS // 3):
                await asyncio.to_thread(pg_server.halt)
                await asyncio.sleep(PG_OUTAGE_S)
                await asyncio.to_thread(pg_server.resume)
                chaos.note(f"postgres stopped for {PG_OUTAGE_S:g} s")


def _kill_order(rng: random.Random, kills: int) -> list[str]:
    """Rounds of the five victims, each round in its own random order: every service is
    killed once before any is killed twice."""
    order: list[str] = []
    while len(order) < kills:
        order += rng.sample(sorted(VICTIMS), len(VICTIMS))
    return order[:kills]


async def _running(stack_pid: int, module: str) -> int:
    """The pid of the service's process, waiting while the stack restarts it."""
    pid: int = await eventually(lambda: _pid_of(stack_pid, module), within=90,
                                what=f"{module} running again")  # fmt: skip
    return pid


async def _venue_faults_met(sim: str, chaos: Chaos) -> bool:
    """Whether every fault asked of the venue has happened, as exchange-sim counts them:
    each create-order fault once, the level2 messages dropped, and the 429s and 503s at
    least ``RATE_FAULTS`` times each, which are then switched off."""
    async with httpx.AsyncClient(base_url=sim, timeout=10) as client:
        faults = (await client.get("/sim/faults")).json()
        injected = _injected((await client.get("/metrics")).text)
        storm = faults["error_rate"] or faults["throttle_rate"]
        if storm and min(injected.get("throttle", 0), injected.get("error", 0)) >= RATE_FAULTS:
            rest = {k: faults[k] for k in ("hang_s", "create_order", "ws_drop_next")}
            (await client.put("/sim/faults", json=rest)).raise_for_status()
            chaos.note(f"429s and 503s over after {injected}")
            storm = False
        if storm or faults["create_order"] or faults["ws_drop_next"]:
            return False
        (await client.put("/sim/faults", json={})).raise_for_status()
    expected = {fault: 1 for fault in CREATE_ORDER_FAULTS} | {"ws_drop": WS_DROPS}
    assert {k: injected.get(k) for k in expected} == expected, injected
    chaos.note(f"every venue fault met: {injected}")
    return True


def _injected(metrics: str) -> dict[str, float]:
    """exchange-sim's count of each fault it injected."""
    return {
        sample.labels["fault"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "sim_faults_injected_total"
    }


def _launch(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


def _up(stack: subprocess.Popen[bytes], state_file: Path) -> bool:
    assert stack.poll() is None, f"deploy.local exited with {stack.returncode}"
    return state_file.exists()


async def _all_ready(services: dict[str, dict[str, Any]]) -> bool:
    async with httpx.AsyncClient(timeout=3) as client:
        for entry in services.values():
            try:
                if (await client.get(entry["url"] + "/readyz")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


async def _our_fills(database: AsyncEngine) -> list[Any]:
    async with database.connect() as connection:
        return list((await connection.execute(select(Fill))).all())


async def _fills(database: AsyncEngine, at_least: int) -> bool:
    return len(await _our_fills(database)) >= at_least


async def _pause(risk: str) -> None:
    async with httpx.AsyncClient(base_url=risk, auth=ControlAuth(TOKEN, "chaos"), timeout=10) as c:
        response = await c.post("/v1/pause", json={"reason": "chaos run: settle and compare"})
        assert response.status_code == 200, response.text


async def _all_intents_final(database: AsyncEngine) -> bool:
    async with database.connect() as connection:
        statuses = (await connection.execute(select(RiskIntent.status))).scalars().all()
    return bool(statuses) and all(status in FINAL_STATUSES for status in statuses)


async def _check_against_the_venue(
    services: dict[str, dict[str, Any]], database: AsyncEngine, key: CdpTestKey
) -> None:
    async with httpx.AsyncClient(base_url=services["exchange-sim"]["url"], timeout=10) as http:
        venue = CoinbaseRest(http, credentials=CdpCredentials.parse(key.name, key.private_pem),
                             clock=LiveClock())  # fmt: skip
        venue_orders = await venue.list_orders()
        venue_fills = await venue.list_fills()
    async with database.connect() as connection:
        our_orders = (await connection.execute(select(Order))).all()
        our_fills = (await connection.execute(select(Fill))).all()
        intents = (await connection.execute(select(RiskIntent))).all()
    # no venue order duplicated, and every one of them ours
    by_client_id = Counter(order.client_order_id for order in venue_orders)
    assert [cid for cid, n in by_client_id.items() if n > 1] == [], "a venue order twice"
    ours = {order.client_order_id for order in our_orders}
    assert set(by_client_id) <= ours, f"venue orders we do not know: {set(by_client_id) - ours}"
    # nor an intent sent twice under two client order ids: none filled beyond its size
    overfilled = _overfilled(intents, our_orders, venue_orders, venue_fills)
    assert overfilled == {}, f"intents filled beyond their size: {overfilled}"
    # every venue fill in Postgres, exactly once, as the venue has it
    assert len({f.trade_id for f in our_fills}) == len(our_fills), "a fill stored twice"
    stored = {f.trade_id: (f.size, f.price) for f in our_fills}
    at_venue = {f.trade_id: (f.size, f.price) for f in venue_fills}
    assert stored == at_venue, (
        f"fills differ: missing {sorted(set(at_venue) - set(stored))}, "
        f"extra {sorted(set(stored) - set(at_venue))}"
    )
    # risk's positions are what the venue's fills add up to
    held: dict[str, Decimal] = defaultdict(Decimal)
    for fill in venue_fills:
        held[fill.product_id] += fill.size if fill.side == "BUY" else -fill.size
    async with httpx.AsyncClient(
        base_url=services["risk"]["url"], auth=ControlAuth(TOKEN, "chaos"), timeout=10
    ) as client:
        positions = (await client.get("/v1/positions")).json()
    risk_held = {p["product_id"]: Decimal(p["base"]) for p in positions if Decimal(p["base"])}
    assert risk_held == {p: b for p, b in held.items() if b}, "risk's positions differ"
    assert len(venue_fills) >= 4, "too little trading to prove anything"


def _overfilled(
    intents: list[Any], our_orders: list[Any], venue_orders: list[Any], venue_fills: list[Any]
) -> dict[str, str]:
    """Intents the venue filled beyond their size: base for a base-sized one, notional
    (with 1% for rounding) for a quote-sized one. A second order for an intent, under a
    client order id of its own, would show here."""
    intent_of = {order.client_order_id: order.intent_id for order in our_orders}
    client_id_of = {order.order_id: order.client_order_id for order in venue_orders}
    base: dict[str, Decimal] = defaultdict(Decimal)
    notional: dict[str, Decimal] = defaultdict(Decimal)
    for fill in venue_fills:
        intent_id = intent_of[client_id_of[fill.order_id]]
        size = fill.size / fill.price if fill.size_in_quote else fill.size
        base[intent_id] += size
        notional[intent_id] += size * fill.price
    over = {}
    for intent in intents:
        if intent.base_size is not None and base[intent.intent_id] > intent.base_size:
            over[intent.intent_id] = f"{base[intent.intent_id]} of {intent.base_size} base"
        if intent.quote_size is not None and notional[intent.intent_id] > intent.quote_size * (
            Decimal("1.01")
        ):
            over[intent.intent_id] = f"{notional[intent.intent_id]} of {intent.quote_size} quote"
    return over
