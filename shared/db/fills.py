"""Recording orders and fills: the ground truth risk rebuilds from and calibration fits to.

Execution writes each fill here, in the same transaction as its order's new state, before
it publishes ``OrderFilled``: a replayed fill finds its (venue, trade id) taken and writes
nothing, so no fill can be counted twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from shared.db.engine import Batch, BatchResult
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import OrderFilled, OrderStatus, TradingMode

__all__ = ["record_fill", "record_order"]

_ORDER_TYPES = {
    OrderKind.MARKET_IOC: "MARKET",
    OrderKind.LIMIT_GTC: "LIMIT",
    OrderKind.LIMIT_GTD: "LIMIT_GTD",
}


async def record_order(
    batch: Batch,
    request: OrderRequest,
    *,
    intent_id: str,
    status: OrderStatus,
    mode: TradingMode,
    filled_size: Decimal = Decimal(0),
    average_price: Decimal | None = None,
    venue_order_id: str | None = None,
    reason: str = "",
) -> None:
    """Insert the order, or bring its state up to date; the request itself never changes.

    ``batch``: a :meth:`~shared.db.engine.Writer.batch`'s."""
    await batch.execute(_RECORD_ORDER, {
        "client_order_id": request.client_order_id, "intent_id": intent_id,
        "venue_order_id": venue_order_id, "product_id": request.product_id,
        "side": request.side.value, "order_type": _ORDER_TYPES[request.kind],
        "post_only": request.post_only, "base_size": request.base_size,
        "quote_size": request.quote_size, "limit_price": request.limit_price,
        "status": status.value, "filled_size": filled_size, "average_price": average_price,
        "reason": reason, "mode": mode.value,
    })  # fmt: skip


async def record_fill(
    batch: Batch, fill: OrderFilled, *, venue: str, arrival_time: datetime
) -> BatchResult:
    """Insert ``fill`` once. Once the batch is sent, the result's first row is None when
    its (venue, trade id) was already recorded.

    ``batch``: a :meth:`~shared.db.engine.Writer.batch`'s."""
    return await batch.execute(_RECORD_FILL, {
        "venue": venue, "trade_id": fill.trade_id, "client_order_id": fill.client_order_id,
        "product_id": fill.product_id, "side": fill.side.value, "price": fill.price,
        "size": fill.size, "fee": fill.fee, "liquidity": fill.liquidity.value,
        "arrival_mid": fill.arrival_mid, "arrival_time": arrival_time,
        "filled_at": fill.filled_at, "mode": fill.mode.value,
    })  # fmt: skip


# The columns are the models' (shared.db.models); created_at and updated_at default to now().
_RECORD_ORDER = """
    insert into orders (client_order_id, intent_id, venue_order_id, product_id, side,
        order_type, post_only, base_size, quote_size, limit_price, status, filled_size,
        average_price, reason, mode)
    values (%(client_order_id)s, %(intent_id)s, %(venue_order_id)s, %(product_id)s, %(side)s,
        %(order_type)s, %(post_only)s, %(base_size)s, %(quote_size)s, %(limit_price)s,
        %(status)s, %(filled_size)s, %(average_price)s, %(reason)s, %(mode)s)
    on conflict (client_order_id) do update
    set status = excluded.status, filled_size = excluded.filled_size,
        average_price = excluded.average_price, reason = excluded.reason,
        venue_order_id = excluded.venue_order_id, updated_at = excluded.updated_at
"""
_RECORD_FILL = """
    insert into fills (venue, trade_id, client_order_id, product_id, side, price, size, fee,
        liquidity, arrival_mid, arrival_time, filled_at, mode)
    values (%(venue)s, %(trade_id)s, %(client_order_id)s, %(product_id)s, %(side)s, %(price)s,
        %(size)s, %(fee)s, %(liquidity)s, %(arrival_mid)s, %(arrival_time)s, %(filled_at)s,
        %(mode)s)
    on conflict (venue, trade_id) do nothing
    returning id
"""
