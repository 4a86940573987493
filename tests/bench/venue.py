"""A local stand-in for Coinbase's request limit: a sliding one-second window per server.

``python -m tests.bench.venue --port P --limit 30`` answers 200 while fewer than ``limit``
requests arrived in the last second, and 429 (HTML body, Retry-After: 1) beyond that,
which is how a venue punishes a client that limits only itself.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route


def build(limit: int) -> Starlette:
    arrivals: deque[float] = deque()
    counts = {"ok": 0, "429": 0}

    async def endpoint(request: Request) -> Response:
        now = time.monotonic()
        while arrivals and arrivals[0] <= now - 1.0:
            arrivals.popleft()
        if len(arrivals) >= limit:
            counts["429"] += 1
            return HTMLResponse("<html>Too Many Requests</html>", 429, {"retry-after": "1"})
        arrivals.append(now)
        counts["ok"] += 1
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> Response:
        return JSONResponse(counts)

    return Starlette(
        routes=[
            Route("/stats", stats),
            Route("/api/v3/brokerage/{path:path}", endpoint, methods=["GET", "POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--limit", type=int, default=30)
    args = parser.parse_args()
    uvicorn.run(build(args.limit), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
