"""exchange-sim's private REST routes: orders, fills, accounts and fees."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Query, Request, Response

from services.exchange_sim.context import SimContext
from services.exchange_sim.replies import (
    bad_request,
    json_response,
    not_found,
    parse_decimal,
    parse_time,
)
from services.exchange_sim.shapes import fill_json, order_json
from shared.coinbase.orders import plain
from shared.matching.types import OrderKind, OrderRejected, OrderRequest
from shared.money import Side

__all__ = ["orders_router", "parse_order"]

T = TypeVar("T")
PAGE_LIMIT = 1000
IdList = Annotated[list[str] | None, Query()]
Limit = Annotated[int, Query(ge=1)]


def orders_router(context: SimContext) -> APIRouter:
    router = APIRouter()
    _order_entry(router, context)
    _order_queries(router, context)
    _account_routes(router, context)
    return router


def _order_entry(router: APIRouter, context: SimContext) -> None:
    venue = context.venue

    @router.post("/orders")
    async def create_order(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            order_request = parse_order(body)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            return bad_request(f"invalid order: {exc}")
        fault = context.faults.next_create_order_fault()
        if fault in ("timeout_before_accept", "error_before_accept"):
            return await _fail(fault, context.faults.faults.hang_s)
        answer = _place(context, order_request, body)
        if fault in ("timeout_after_accept", "error_after_accept"):
            return await _fail(fault, context.faults.faults.hang_s)
        return json_response(answer)

    @router.post("/orders/batch_cancel")
    async def batch_cancel(request: Request) -> Response:
        try:
            ids = orjson.loads(await request.body())["order_ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TypeError("order_ids must be a list of strings")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return bad_request(f"invalid cancel request: {exc}")
        if len(ids) > 100:
            return bad_request("at most 100 order ids per request")
        now = context.clock.now()
        results = []
        for order_id in ids:
            reason = venue.cancel(order_id, now)
            results.append({
                "success": not reason,
                "failure_reason": reason or "UNKNOWN_CANCEL_FAILURE_REASON",
                "order_id": order_id,
            })  # fmt: skip
        return json_response({"results": results})


def _order_queries(router: APIRouter, context: SimContext) -> None:
    venue = context.venue

    @router.get("/orders/historical/batch")
    async def list_orders(
        product_ids: IdList = None,
        order_ids: IdList = None,
        order_status: IdList = None,
        start_date: str | None = None,
        end_date: str | None = None,
        limit: Limit = 100,
        cursor: str = "",
    ) -> Response:
        try:
            since, until = _times(start_date, end_date)
        except ValueError as exc:
            return bad_request(str(exc))
        orders = [
            order for order in venue.orders()
            if (not product_ids or order.request.product_id in product_ids)
            and (not order_ids or order.order_id in order_ids)
            and (not order_status or order.status.value in order_status)
            and (since is None or order.created_time >= since)
            and (until is None or order.created_time <= until)
        ]  # fmt: skip
        page, next_cursor = _page(orders, cursor, limit)
        shaped = [order_json(o, venue.ledger.outstanding_hold(o.order_id)) for o in page]
        return json_response({"orders": shaped, "sequence": "0", "has_next": bool(next_cursor),
                              "cursor": next_cursor})  # fmt: skip

    @router.get("/orders/historical/fills")
    async def list_fills(
        order_ids: IdList = None,
        trade_ids: IdList = None,
        product_ids: IdList = None,
        start_sequence_timestamp: str | None = None,
        limit: Limit = 100,
        cursor: str = "",
    ) -> Response:
        try:
            since, _ = _times(start_sequence_timestamp, None)
        except ValueError as exc:
            return bad_request(str(exc))
        fills = [
            fill for fill in venue.fills
            if (not order_ids or fill.order_id in order_ids)
            and (not trade_ids or fill.trade_id in trade_ids)
            and (not product_ids or fill.product_id in product_ids)
            and (since is None or fill.time >= since)
        ]  # fmt: skip
        page, next_cursor = _page(fills, cursor, limit)
        return json_response({"fills": [fill_json(f) for f in page], "cursor": next_cursor})

    @router.get("/orders/historical/{order_id}")
    async def get_order(order_id: str) -> Response:
        try:
            order = venue.order(order_id)
        except KeyError:
            return not_found("order")
        return json_response({"order": order_json(order, venue.ledger.outstanding_hold(order_id))})


def _account_routes(router: APIRouter, context: SimContext) -> None:
    venue = context.venue

    @router.get("/accounts")
    async def accounts(limit: Limit = 49, cursor: str = "") -> Response:
        rows = [_account(currency, context) for currency in venue.ledger.currencies()]
        page, next_cursor = _page(rows, cursor, limit)
        return json_response({"accounts": page, "has_next": bool(next_cursor),
                              "cursor": next_cursor, "size": len(page)})  # fmt: skip

    @router.get("/transaction_summary")
    async def transaction_summary() -> Response:
        fees = venue.fees
        return json_response({
            "total_volume": float(venue.traded_volume),  # Coinbase sends these two as numbers
            "total_fees": float(venue.paid_fees),
            "fee_tier": {
                "pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "10000",
                "taker_fee_rate": plain(fees.taker), "maker_fee_rate": plain(fees.maker),
                "aop_from": "", "aop_to": "",
            },
            "margin_rate": None, "goods_and_services_tax": None,
            "advanced_trade_only_volume": float(venue.traded_volume),
            "advanced_trade_only_fees": float(venue.paid_fees),
            "coinbase_pro_volume": 0, "coinbase_pro_fees": 0, "total_balance": "",
            "has_promo_fee": False,
        })  # fmt: skip


def _place(context: SimContext, request: OrderRequest, body: dict[str, Any]) -> dict[str, Any]:
    venue = context.venue
    configuration = body.get("order_configuration", {})
    try:
        order, created = venue.place(request, context.clock.now())
    except OrderRejected as exc:
        return _rejected(exc.failure_reason, exc.message, configuration)
    if not created and context.faults.faults.duplicate_client_order_id == "reject":
        return _rejected("DUPLICATE_CLIENT_ORDER_ID", "duplicate client_order_id", configuration)
    return {
        "success": True,
        "success_response": {
            "order_id": order.order_id, "product_id": request.product_id,
            "side": request.side.value, "client_order_id": request.client_order_id,
            "attached_order_id": "",
        },
        "order_configuration": configuration,
    }  # fmt: skip


def _rejected(reason: str, message: str, configuration: Any) -> dict[str, Any]:
    preview = reason if reason.startswith("PREVIEW_") else "UNKNOWN_PREVIEW_FAILURE_REASON"
    new_order = "UNKNOWN_FAILURE_REASON" if reason.startswith("PREVIEW_") else reason
    return {
        "success": False,
        "failure_reason": new_order,
        "error_response": {
            "error": reason, "message": message, "error_details": message,
            "preview_failure_reason": preview, "new_order_failure_reason": new_order,
        },
        "order_configuration": configuration,
    }  # fmt: skip


async def _fail(fault: str, hang_s: float) -> Response:
    if fault.startswith("timeout"):
        await asyncio.sleep(hang_s)  # the client has given up long before
        return json_response({"error": "DEADLINE_EXCEEDED", "message": "timeout"}, 504)
    status = 500 if fault == "error_after_accept" else 503
    return json_response({"error": "INTERNAL", "message": "injected fault"}, status)


def parse_order(body: dict[str, Any]) -> OrderRequest:
    """Coinbase's create-order body as an :class:`OrderRequest`; ValueError when malformed."""
    client_order_id = body["client_order_id"]
    if not isinstance(client_order_id, str) or not client_order_id:
        raise ValueError("client_order_id is required")
    configuration = body["order_configuration"]
    if not isinstance(configuration, dict) or len(configuration) != 1:
        raise ValueError("order_configuration must hold exactly one configuration")
    ((name, fields),) = configuration.items()
    kind = OrderKind(name)
    if not isinstance(fields, dict):
        raise ValueError(f"{name} must be an object")
    amounts = {
        key: parse_decimal(fields[key], key)
        for key in ("base_size", "quote_size", "limit_price")
        if key in fields
    }
    post_only = fields.get("post_only", False)
    if not isinstance(post_only, bool):
        raise ValueError("post_only must be a boolean")
    end_time = parse_time(fields["end_time"], "end_time") if "end_time" in fields else None
    return OrderRequest(
        client_order_id=client_order_id,
        product_id=str(body["product_id"]),
        side=Side(body["side"]),
        kind=kind,
        base_size=amounts.get("base_size"),
        quote_size=amounts.get("quote_size"),
        limit_price=amounts.get("limit_price"),
        post_only=post_only,
        end_time=end_time,
    )


def _times(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    return (
        parse_time(start, "start") if start else None,
        parse_time(end, "end") if end else None,
    )


def _page(rows: Sequence[T], cursor: str, limit: int) -> tuple[list[T], str]:
    """Offset paging; the cursor is the offset of the next page (empty at the end)."""
    offset = int(cursor) if cursor.isdigit() else 0
    limit = min(limit, PAGE_LIMIT)
    page = list(rows[offset : offset + limit])
    more = offset + limit < len(rows)
    return page, str(offset + limit) if more else ""


def _account(currency: str, context: SimContext) -> dict[str, Any]:
    ledger = context.venue.ledger
    uuid = f"00000000-0000-4000-8000-{zlib.crc32(currency.encode()):012d}"
    return {
        "uuid": uuid, "name": f"{currency} Wallet", "currency": currency,
        "available_balance": {"value": plain(ledger.available(currency)), "currency": currency},
        "default": currency == "USD", "active": True, "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z", "deleted_at": None,
        "type": "ACCOUNT_TYPE_FIAT" if currency == "USD" else "ACCOUNT_TYPE_CRYPTO",
        "ready": True, "hold": {"value": plain(ledger.held(currency)), "currency": currency},
        "retail_portfolio_id": "",
    }  # fmt: skip
