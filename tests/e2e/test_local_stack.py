"""``make paper``: the whole stack as local processes, steered over its control API.

``python -m deploy.local`` (what ``make paper`` runs) reads docker-compose.yml and starts
the config-validator and migrate init steps, then rate-limiter, market-data, signal,
risk, execution and exchange-sim, with compose's commands and environment. exchange-sim
replays a history made here: two products whose prices swing in slow waves, so a fast
EMA crossover enters and exits every few minutes of market time; the clock runs 60
times faster than the wall. The test then checks what a user would:

- proposals are decided, and orders and fills land in Postgres;
- every service answers ``/metrics`` with its own metrics;
- pause: entry proposals are refused as ``trading_paused`` and no entry is issued;
- resume: entries are approved again;
- flatten: every position reaches flat;
- a real Prometheus scrapes it all: every alert rule evaluates, every dashboard panel's
  query returns data;
- neither the control token nor the database password appears in any log line, metric,
  status or error answer;
- Ctrl-C stops every process cleanly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy.local.compose import ROOT
from deploy.local.servers import free_port
from services.risk.ctl import ControlAuth
from shared.bus import BusKeys
from shared.candle_files import Candle, write_candles
from shared.db import Fill, Order, RiskDecision, RiskIntent
from tests.support.polling import eventually
from tests.support.promtool import prometheus as prometheus_binary
from tests.support.secrets import everything_served, leaked, with_password
from tests.support.stack_config import trading_config

PRODUCTS = {"BTC-USD": 60_000, "ETH-USD": 3_000}
TOKEN = "local-stack-control-token-3b9d5e"
PASSWORD = "pg-secret-7c41e9d2"
AUTH = ControlAuth(TOKEN, "local stack test")
STRATEGIES = {"strategies": [
    {"name": "waves", "kind": "ema_cross", "products": list(PRODUCTS), "granularity_s": 60,
     "quote_size_usd": 100,
     "params": {"fast_period": 2, "slow_period": 5, "atr_period": 5, "atr_stop_multiple": 20,
                "reward_risk_ratio": 20}},
]}  # fmt: skip
RISK = {
    "default_asset_cap_pct": 10, "stop_loss_pct": 50, "take_profit_pct": 500,
    "max_open_trades": 4, "max_trades_per_hour": 1000, "max_trades_per_day": 10000,
    "hourly_budget_usd": 1_000_000, "daily_budget_usd": 1_000_000, "new_trade_cooldown_s": 0,
    "dust_threshold_usd": 1, "min_trade_usd": 10, "daily_loss_limit_pct": 50,
    "max_drawdown_pct": 50,
}  # fmt: skip
METRICS = {  # a metric each service exports, by service
    "rate-limiter": "ratelimit_tokens_granted_total", "market-data": "md_ws_messages_total",
    "signal": "signal_proposals_total", "risk": "risk_decisions_total",
    "execution": "execution_intents_total", "exchange-sim": "service_info",
}  # fmt: skip


def _config(tmp_path: Path) -> Path:
    return trading_config(tmp_path, STRATEGIES, RISK, PRODUCTS)


def _history(directory: Path, minutes: int = 600) -> Path:
    """One-minute candles on waves of 8 and 11 minutes, 1.5% deep: a crossover every few."""
    directory.mkdir()
    for index, (product_id, base) in enumerate(PRODUCTS.items()):
        period = 8 + 3 * index
        candles = []
        for minute in range(minutes):
            at = [base * (1 + 0.015 * math.sin(2 * math.pi * (minute + f) / period))
                  for f in (0, 1)]  # fmt: skip
            open_, close = (Decimal(f"{p:.2f}") for p in at)
            low, high = min(open_, close), max(open_, close)
            volume = Decimal(5)
            candles.append(Candle(1_767_225_600 + 60 * minute, low, high, open_, close, volume))
        write_candles(directory / f"{product_id}.csv", candles)
    return directory


@pytest.mark.timeout(420)
async def test_make_paper_trades_and_obeys_pause_resume_and_flatten(
    redis_url: str, bus_keys: BusKeys, pg_url: str, pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    pg_url, secrets = with_password(pg_url, PASSWORD)
    secrets["control token"] = TOKEN
    state_file = tmp_path / "state.json"
    log_path = tmp_path / "paper.log"
    env = {**os.environ, "CONTROL_API_TOKEN": TOKEN, "SIM_PRODUCTS": ",".join(PRODUCTS)}
    command = [
        sys.executable, "-m", "deploy.local", "--free-ports", "--speed", "60",
        "--history", str(_history(tmp_path / "replay")), "--config-dir", str(_config(tmp_path)),
        "--redis-url", redis_url, "--database-url", pg_url, "--bus-prefix", bus_keys.prefix,
        "--state-file", str(state_file),
    ]  # fmt: skip
    process = _launch(command, env, log_path)
    stopped = False
    servers: list[subprocess.Popen[bytes]] = []  # Prometheus, stopped with the test
    try:
        await eventually(lambda: _up(process, state_file), within=180, what="the stack")
        services = json.loads(state_file.read_text())
        assert set(services) == set(METRICS)
        risk = services["risk"]["url"]
        prometheus = _start_prometheus(services, tmp_path, servers)
        await eventually(lambda: _trading(pg_engine), within=120,
                         what="decisions, orders and fills in Postgres")  # fmt: skip
        await _check_metrics(services)
        await _pause_blocks_entries(risk, pg_engine)
        await _resume_lets_entries_in(risk, pg_engine)
        await _flatten_reaches_flat(risk)
        await _check_dashboards(prometheus)
        answers = await everything_served(services, AUTH)
        pids = [entry["pid"] for entry in services.values()]
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        stopped = True
        assert not [pid for pid in pids if _alive(pid)], "a service outlived the stack"
        assert "paper: stopped" in log_path.read_text()
        said = log_path.read_text(errors="replace") + answers
        assert leaked(secrets, said) == [], "a secret reached a log line, a metric or an answer"
    except AssertionError as exc:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-80:])
        raise AssertionError(f"{exc}\n--- the stack's log, last lines ---\n{tail}") from None
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        if not stopped:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _start_prometheus(
    services: dict[str, dict[str, Any]], tmp_path: Path, servers: list[subprocess.Popen[bytes]]
) -> str:
    """The real Prometheus with deploy/prometheus's config and rules, pointed at the local
    stack's ports and scraping every second; its URL. Its process joins ``servers``."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ROOT / "deploy/prometheus/alerts.yml")]
    for job in config["scrape_configs"]:
        url = services[job["job_name"]]["url"]
        job["static_configs"][0]["targets"] = [url.removeprefix("http://")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [prometheus_binary(), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    servers.append(process)
    return f"http://127.0.0.1:{port}"


async def _check_dashboards(prometheus: str) -> None:
    """Every alert rule evaluates; every dashboard panel's query returns data."""
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:

        async def query(expr: str) -> list[Any]:
            response = await client.get("/api/v1/query", params={"query": expr})
            assert response.status_code == 200, (expr, response.text)
            return list(response.json()["data"]["result"])

        async def all_up() -> bool:
            return len([r for r in await query("up == 1")]) == len(METRICS)

        await eventually(all_up, within=30, what="Prometheus scraping every service")
        rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        unhealthy = [r["name"] for g in rules for r in g["rules"] if r["health"] != "ok"]
        assert rules and unhealthy == [], f"alert rules that do not evaluate: {unhealthy}"
        empty = []
        for path in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json")):
            for panel in json.loads(path.read_text())["panels"]:
                exprs = [t["expr"].replace("$__rate_interval", "30s") for t in panel["targets"]]
                if not any([await query(expr) for expr in exprs]):
                    empty.append(f"{path.stem}: {panel['title']}")
        assert empty == [], f"dashboard panels without data: {empty}"


def _launch(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


def _up(process: subprocess.Popen[bytes], state_file: Path) -> bool:
    assert process.poll() is None, f"deploy.local exited with {process.returncode}"
    return state_file.exists()


async def _counts(database: AsyncEngine) -> dict[str, int]:
    queries = {
        "decisions": select(func.count()).select_from(RiskDecision),
        "approved_entries": select(func.count()).select_from(RiskDecision).where(
            RiskDecision.action == "ENTRY", RiskDecision.outcome != "REJECTED"),
        "paused_refusals": select(func.count()).select_from(RiskDecision).where(
            RiskDecision.reasons.contains(["trading_paused"])),
        "entry_intents": select(func.count()).select_from(RiskIntent).where(
            RiskIntent.kind == "ENTRY"),
        "orders": select(func.count()).select_from(Order),
        "fills": select(func.count()).select_from(Fill),
    }  # fmt: skip
    async with database.connect() as connection:
        return {name: (await connection.execute(q)).scalar_one() for name, q in queries.items()}


async def _trading(database: AsyncEngine) -> bool:
    counts = await _counts(database)
    return counts["approved_entries"] >= 2 and counts["orders"] >= 3 and counts["fills"] >= 3


async def _check_metrics(services: dict[str, dict[str, Any]]) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for name, entry in services.items():
            response = await client.get(entry["url"] + "/metrics")
            assert response.status_code == 200, name
            assert METRICS[name] in response.text, f"{name} /metrics lacks {METRICS[name]}"


async def _post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=10) as client:
        return await client.post(path, json=body)


async def _get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=10) as client:
        response = await client.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def _ctl(risk: str, *args: str) -> Any:
    """``python -m services.risk.ctl``, as an operator runs it; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "services.risk.ctl", "--url", risk, "--actor", "local stack test",
         *args],
        cwd=ROOT, env={**os.environ, "CONTROL_API_TOKEN": TOKEN}, capture_output=True,
        text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


async def _pause_blocks_entries(risk: str, database: AsyncEngine) -> None:
    paused = _ctl(risk, "pause", "local stack test")
    assert paused["entries_allowed"] is False and paused["actor"].startswith("local stack test")
    before = await _counts(database)

    async def refused_twice() -> bool:
        return (await _counts(database))["paused_refusals"] >= before["paused_refusals"] + 2

    await eventually(refused_twice, within=90, what="two entries refused while paused")
    after = await _counts(database)
    assert after["entry_intents"] == before["entry_intents"], "an entry was issued while paused"


async def _resume_lets_entries_in(risk: str, database: AsyncEngine) -> None:
    response = await _post(risk, "/v1/resume", {"reason": "local stack test"})
    assert response.status_code == 200, response.text
    assert response.json()["entries_allowed"] is True
    before = await _counts(database)

    async def entered() -> bool:
        return (await _counts(database))["entry_intents"] > before["entry_intents"]

    await eventually(entered, within=90, what="an entry issued after resume")


async def _flatten_reaches_flat(risk: str) -> None:
    response = await _post(risk, "/v1/flatten", {"reason": "local stack test"})
    assert response.status_code == 202, response.text
    flatten_id = response.json()["flatten_id"]

    async def done() -> bool:
        return bool((await _get(risk, f"/v1/flatten/{flatten_id}"))["status"] == "DONE")

    await eventually(done, within=90, what=f"flatten {flatten_id} to finish")
    positions = await _get(risk, "/v1/positions")
    held = [p for p in positions if Decimal(p["base"]) > 0 and not p["dust"]]
    assert held == [], f"still held after the flatten: {held}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
