"""``python -m deploy.local`` (``make paper``): the whole stack as local processes.

The same services, commands and environment as ``docker compose up`` (read from
docker-compose.yml; variables from ``.env``, else ``.env.example``, and the process
environment), for machines without Docker. A PAPER rehearsal only. By default the market
is exchange-sim (the compose profile ``sim``): it replays the candle files of
``--history`` (``<PRODUCT>.csv`` or ``.parquet``), or ``data/replay`` when that exists,
and otherwise its own synthetic markets. ``--market coinbase`` reads Coinbase's public
feed instead. Redis and Postgres are found or started as the tests do (``REDIS_URL`` /
``DATABASE_URL``, else the local servers on their standard ports, else throwaway ones
from the local binaries); on a Postgres found or started here the stack uses a database
of its own, ``cbtrader_paper``. One log stream; Ctrl-C stops everything cleanly.

    make paper
    python -m deploy.local --history data/replay --speed 60
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from deploy.local.compose import ROOT, ComposeError, Plan, plan, read_env_file
from deploy.local.servers import HarnessError, free_port, resolve_postgres, resolve_redis
from deploy.local.stack import Stack, StackError
from shared.clock import LiveClock
from shared.coinbase.auth import CdpCredentials, new_private_key_pem
from shared.coinbase.errors import CredentialsError

DATABASE = "cbtrader_paper"  # on a Postgres found or started here, the stack's own database
TOKEN_FILE = ROOT / ".paper" / "control-token"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--market", choices=["sim", "coinbase"], default="sim",
                        help="where market data comes from (default: sim, offline)")  # fmt: skip
    parser.add_argument("--live-on-sim", action="store_true",
                        help="rehearse LIVE: execution places real orders on exchange-sim, "
                        "signed with CB_API_KEY/CB_API_SECRET or a key made for the run; "
                        "market time runs at wall speed, as LIVE requires")  # fmt: skip
    parser.add_argument("--history", type=Path, help="candle files exchange-sim replays")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="run market time this many times faster (sim only)")  # fmt: skip
    parser.add_argument("--config-dir", type=Path, help="instead of ./config")
    parser.add_argument("--env-file", type=Path, help="instead of .env / .env.example")
    parser.add_argument("--redis-url", help="instead of finding or starting Redis")
    parser.add_argument("--database-url", help="instead of finding or starting Postgres")
    parser.add_argument("--bus-prefix", default="paper:", help="namespace of the stack's keys")
    parser.add_argument("--free-ports", action="store_true",
                        help="any free ports instead of compose's 8010-8060")  # fmt: skip
    parser.add_argument("--state-file", type=Path,
                        help="write each service's URL and pid here once all are up")  # fmt: skip
    args = parser.parse_args(argv)
    if args.speed != 1.0 and args.market != "sim":
        parser.error("--speed runs market time faster, which only the simulator can do")
    if args.live_on_sim and (args.market != "sim" or args.speed != 1.0):
        parser.error("--live-on-sim trades on exchange-sim at wall speed: no --market, --speed")
    if args.history is not None and not args.history.is_dir():
        parser.error(f"--history {args.history}: not a directory of candle files")
    return args


def variables(args: argparse.Namespace) -> dict[str, str]:
    """What compose would substitute, with what this command decides on top."""
    own = ROOT / ".env"
    env_file = args.env_file or (own if own.exists() else ROOT / ".env.example")
    values = {**read_env_file(env_file), **os.environ}
    values["TRADING_MODE"] = "PAPER"  # a rehearsal: LIVE orders go to exchange-sim at most
    if args.live_on_sim:
        values.update(_sim_credentials(values), COINBASE_REST_URL="http://exchange-sim:8060")
    # DATABASE_URL is replaced by the local one; compose's required password is not used
    values["POSTGRES_PASSWORD"] = values.get("POSTGRES_PASSWORD") or "unused-locally"
    values["MD_SOURCE"] = args.market
    if not values.get("CONTROL_API_TOKEN"):
        values["CONTROL_API_TOKEN"] = _generated_token()
    if args.history is not None:
        values["SIM_REPLAY_DIR"] = str(args.history.resolve())
    elif (ROOT / "data" / "replay").is_dir() and not values.get("SIM_REPLAY_DIR"):
        values["SIM_REPLAY_DIR"] = str(ROOT / "data" / "replay")
    return values


def _sim_credentials(values: dict[str, str]) -> dict[str, str]:
    """The CDP key execution signs with and exchange-sim accepts: the one given in
    CB_API_KEY/CB_API_SECRET, or one made for this run (it is never written anywhere)."""
    name, secret = values.get("CB_API_KEY"), values.get("CB_API_SECRET")
    if not (name and secret):
        name, secret = "organizations/local-rehearsal/apiKeys/sim", new_private_key_pem()
    credentials = CdpCredentials.parse(name, secret)  # a bad key: an error naming it
    accepted = json.dumps({credentials.key_name: credentials.public_pem()})
    return {"CB_API_KEY": name, "CB_API_SECRET": secret, "SIM_API_KEYS": accepted}


def _generated_token() -> str:
    """A control token for this run, kept in a file only its owner can read (never logged)."""
    TOKEN_FILE.parent.mkdir(exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    print(f"paper: CONTROL_API_TOKEN is not set; this run's token is in {TOKEN_FILE}", flush=True)
    return token


def build_plan(args: argparse.Namespace, redis_url: str, database_url: str) -> Plan:
    common = {"BUS_PREFIX": args.bus_prefix}
    if args.live_on_sim:  # compose's base file says PAPER; the LIVE file would say LIVE
        common["TRADING_MODE"] = "LIVE"
    if args.speed != 1.0:
        origin = LiveClock().now().replace(microsecond=0)
        common.update(CLOCK_SPEED=str(args.speed), CLOCK_ORIGIN=origin.isoformat())
    host_paths = {"/app/config": args.config_dir} if args.config_dir is not None else {}
    values = variables(args)

    def make(ports: dict[str, int] | None = None) -> Plan:
        return plan(
            values, redis_url=redis_url, database_url=database_url, ports=ports,
            profiles=frozenset({"sim"}) if args.market == "sim" else frozenset(),
            extra_env={"*": common}, host_paths=host_paths,
        )  # fmt: skip

    built = make()
    if args.free_ports:
        built = make({s.name: free_port() for s in built.services if s.port is not None})
    return built


def _database(url: str) -> str:
    """The stack's own database on the server at ``url``, created when missing."""
    with psycopg.connect(url, autocommit=True) as connection:
        found = connection.execute("select 1 from pg_database where datname = %s", (DATABASE,))
        if found.fetchone() is None:
            connection.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    base, _, _ = url.rpartition("/")
    return f"{base}/{DATABASE}"


def _state(stack: Stack, built: Plan) -> dict[str, Any]:
    return {
        service.name: {"url": service.url, "pid": stack.pid(service.name)}
        for service in built.services if not service.one_shot
    }  # fmt: skip


def _write_atomically(path: Path, content: str) -> None:
    """Whoever waits for ``path`` sees it whole or not at all, never half written."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(content)
    os.replace(partial, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    servers: list[Any] = []  # the throwaway Redis and Postgres started here, if any
    try:
        return _run(args, servers)
    except (HarnessError, ComposeError, StackError, CredentialsError, psycopg.Error) as exc:
        print(f"paper: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        for server in servers:
            server.stop()


def _run(args: argparse.Namespace, servers: list[Any]) -> int:
    redis_url = args.redis_url
    if not redis_url:
        redis_url, redis_server = resolve_redis()
        servers += [redis_server] if redis_server else []
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    if not database_url:  # a server found or started here: the stack gets its own database
        server_url, postgres_server = resolve_postgres()
        servers += [postgres_server] if postgres_server else []
        database_url = _database(server_url)
    built = build_plan(args, redis_url, database_url)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = Stack(built, write=lambda line: print(line, flush=True))
    stack.start()  # on failure it has stopped what it started
    try:
        names = ", ".join(s.name for s in built.services)
        print(f"paper: the stack is up ({names}); Ctrl-C stops it", flush=True)
        if args.state_file is not None:
            _write_atomically(args.state_file, json.dumps(_state(stack, built), indent=2))
        stop.wait()
    finally:
        statuses = stack.stop()
    failed = {name: code for name, code in statuses.items() if code != 0}
    print(f"paper: stopped{'; unclean exits: ' + str(failed) if failed else ''}", flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
