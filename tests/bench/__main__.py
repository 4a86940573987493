"""``make bench``: one ``BENCH <name> key=value ...`` line per benchmark.

``python -m tests.bench [bus] [ratelimit] [pipeline] [backtest]`` runs the ones named
(pipeline prints the memory line too); with none, all of them.
"""

from __future__ import annotations

import sys

import uvloop

from deploy.local.servers import (
    HarnessError,
    PostgresServer,
    RedisServer,
    resolve_postgres,
    resolve_redis,
)
from tests.bench import backtest, bus, pipeline, ratelimit

BENCHMARKS = ("bus", "ratelimit", "pipeline", "backtest")


def main(argv: list[str]) -> int:
    unknown = sorted(set(argv) - set(BENCHMARKS))
    if unknown:
        print(f"bench: no {unknown}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    servers: list[RedisServer | PostgresServer | None] = []
    try:
        redis_url, redis_server = resolve_redis()
        servers.append(redis_server)
        database_url = ""
        if not argv or "pipeline" in argv:  # the only one that needs Postgres
            database_url, postgres_server = resolve_postgres()
            servers.append(postgres_server)
        for name in BENCHMARKS:
            if not argv or name in argv:
                for line in _run(name, redis_url, database_url):
                    print(line, flush=True)
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in servers:  # the servers the harness started, not ones it found
            if server:
                server.stop()
    return 0


def _run(name: str, redis_url: str, database_url: str) -> list[str]:
    """The lines of one benchmark (the pipeline's are its own and the memory line)."""
    if name == "bus":
        # The services run on uvloop (uvicorn picks it), so the benchmark does too.
        return [uvloop.run(bus.run(redis_url))]
    if name == "ratelimit":
        return [ratelimit.run(redis_url)]
    if name == "pipeline":
        return pipeline.run(redis_url, database_url)
    return [backtest.run()]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
