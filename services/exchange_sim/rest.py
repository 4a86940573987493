"""exchange-sim's REST API under ``/api/v3/brokerage``: Coinbase's paths, shapes, codes.

The guard in front of every route does what Coinbase's edge does: it verifies the JWT of
private endpoints (401 otherwise), counts the request against the per-key or per-IP
limit (429 with an HTML body beyond it, rate-limit headers always), and applies the
injected faults (latency, 503s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from services.exchange_sim.auth import Unauthenticated
from services.exchange_sim.candles import Granularity
from services.exchange_sim.context import SimContext
from services.exchange_sim.orders_api import orders_router
from services.exchange_sim.replies import bad_request, json_response, not_found
from services.exchange_sim.shapes import candle_json, pricebook_json, product_json, trade_json
from services.exchange_sim.venue import Venue
from shared.coinbase.orders import plain
from shared.coinbase.transport import API_PREFIX

__all__ = ["install_guard", "market_router"]

TOO_MANY = "<html><head><title>429 Too Many Requests</title></head><body><h1>429 Too Many Requests</h1></body></html>"  # noqa: E501
MAX_CANDLES = 350
IdList = Annotated[list[str] | None, Query()]


def install_guard(app: FastAPI, context: SimContext) -> None:
    @app.middleware("http")
    async def coinbase_edge(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith(API_PREFIX):
            return await call_next(request)
        faults = context.faults.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        private = not request.url.path.startswith(API_PREFIX + "/market/")
        identity = request.client.host if request.client else "unknown"
        if private:
            try:
                identity = _authenticate(request, context)
            except Unauthenticated as exc:
                return JSONResponse({"error": "UNAUTHENTICATED", "message": str(exc)}, 401)
        limiter = context.private_limit if private else context.public_limit
        verdict = limiter.check(identity, context.clock.now().timestamp())
        if not verdict.allowed or context.faults.throttle_request():
            return HTMLResponse(TOO_MANY, 429, headers=verdict.headers())
        if context.faults.fail_request():
            response: Response = JSONResponse(
                {"error": "UNAVAILABLE", "message": "injected fault"}, 503
            )
        else:
            response = await call_next(request)
        response.headers.update(verdict.headers())
        return response


def _authenticate(request: Request, context: SimContext) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing bearer token")
    host = request.headers.get("host", "")
    return context.verifier.verify(
        token.strip(), context.clock.now(), method=request.method, host=host,
        path=request.url.path,
    )  # fmt: skip


def market_router(context: SimContext) -> APIRouter:
    """Market data, each path served twice: authenticated and under ``/market``."""
    router = APIRouter(prefix=API_PREFIX, tags=["coinbase"])
    venue = context.venue
    for prefix in ("", "/market"):
        router.add_api_route(prefix + "/products", _products(venue), methods=["GET"])
        router.add_api_route(prefix + "/products/{product_id}", _product(venue), methods=["GET"])
        router.add_api_route(prefix + "/product_book", _product_book(context), methods=["GET"])
        router.add_api_route(
            prefix + "/products/{product_id}/candles", _candles(context), methods=["GET"]
        )
        router.add_api_route(
            prefix + "/products/{product_id}/ticker", _ticker(venue), methods=["GET"]
        )
    router.add_api_route("/best_bid_ask", _best_bid_ask(context), methods=["GET"])
    router.include_router(orders_router(context))
    return router


def _last(venue: Venue, product_id: str) -> Decimal | None:
    trades = venue.trades[product_id]
    return trades[0].price if trades else None


def _products(venue: Venue) -> Callable[..., Awaitable[Response]]:
    async def list_products() -> Response:
        products = [
            product_json(listing, venue.books[pid], _last(venue, pid))
            for pid, listing in venue.products.items()
        ]
        return json_response({"products": products, "num_products": len(products)})

    return list_products


def _product(venue: Venue) -> Callable[..., Awaitable[Response]]:
    async def get_product(product_id: str) -> Response:
        listing = venue.products.get(product_id)
        if listing is None:
            return not_found("product")
        return json_response(
            product_json(listing, venue.books[product_id], _last(venue, product_id))
        )

    return get_product


def _product_book(context: SimContext) -> Callable[..., Awaitable[Response]]:
    venue = context.venue

    async def product_book(product_id: str, limit: Annotated[int, Query(ge=0)] = 50) -> Response:
        book = venue.books.get(product_id)
        if book is None:
            return not_found("product")
        depth = limit or 1000
        body: dict[str, Any] = {"pricebook": pricebook_json(book, depth, context.clock.now())}
        bid, ask = book.best_bid(), book.best_ask()
        last = _last(venue, product_id)
        body["last"] = plain(last) if last is not None else ""
        if bid and ask:
            mid = (bid[0] + ask[0]) / 2
            body["mid_market"] = plain(mid)
            body["spread_absolute"] = plain(ask[0] - bid[0])
            body["spread_bps"] = plain(((ask[0] - bid[0]) / mid * 10_000).quantize(Decimal("0.01")))
        return json_response(body)

    return product_book


def _best_bid_ask(context: SimContext) -> Callable[..., Awaitable[Response]]:
    venue = context.venue

    async def best_bid_ask(product_ids: IdList = None) -> Response:
        wanted = product_ids or list(venue.products)
        now = context.clock.now()
        books = [pricebook_json(venue.books[p], 1, now) for p in wanted if p in venue.books]
        return json_response({"pricebooks": books})

    return best_bid_ask


def _candles(context: SimContext) -> Callable[..., Awaitable[Response]]:
    venue = context.venue

    async def candles(
        product_id: str, start: str, end: str, granularity: str, limit: int | None = None
    ) -> Response:
        store = venue.candles.get(product_id)
        if store is None:
            return not_found("product")
        try:
            bucket = Granularity(granularity)
            first, last = int(start), int(end)
        except ValueError:
            return bad_request("start and end must be UNIX seconds; granularity one of "
                               + ", ".join(g.value for g in Granularity))  # fmt: skip
        if last < first or (last - first) // bucket.seconds >= MAX_CANDLES:
            return bad_request(
                "start and end argument is invalid - number of candles requested should be "
                f"less than {MAX_CANDLES}"
            )
        _catch_up(context)
        rows = store.candles(first, last + 1, bucket, limit)
        return json_response({"candles": [candle_json(c) for c in rows]})

    return candles


def _catch_up(context: SimContext) -> None:
    """Move the markets to now first, should the driver's next step be late: like
    Coinbase's, the venue's candles hold every print up to the moment they are asked for.
    What the step changed goes out on the WebSocket with the driver's next step."""
    now = context.clock.now()
    if now > context.venue.time:
        context.venue.step(now)


def _ticker(venue: Venue) -> Callable[..., Awaitable[Response]]:
    async def market_trades(product_id: str, limit: Annotated[int, Query(ge=1)] = 100) -> Response:
        trades = venue.trades.get(product_id)
        if trades is None:
            return not_found("product")
        book = venue.books[product_id]
        bid, ask = book.best_bid(), book.best_ask()
        return json_response({
            "trades": [trade_json(t, book) for t in list(trades)[:limit]],
            "best_bid": plain(bid[0]) if bid else "",
            "best_ask": plain(ask[0]) if ask else "",
        })  # fmt: skip

    return market_trades
