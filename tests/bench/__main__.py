"""``make bench``: one ``BENCH <name> key=value ...`` line per benchmark."""

from __future__ import annotations

import sys

import uvloop

from deploy.local.servers import HarnessError, resolve_redis
from tests.bench import backtest, bus, ratelimit


def main() -> int:
    try:
        redis_url, server = resolve_redis()
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        # The services run on uvloop (uvicorn picks it), so the benchmark does too.
        print(uvloop.run(bus.run(redis_url)), flush=True)
        print(ratelimit.run(redis_url), flush=True)
        print(backtest.run(), flush=True)
    finally:
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
