"""Recording orders and fills: the ground truth risk rebuilds from and calibration fits to.

Execution writes each fill here, in the same transaction as its order's new state, before
it publishes ``OrderFilled``: a replayed fill finds its (venue, trade id) taken and writes
nothing, so no fill can be counted twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.models import Fill, Order
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import OrderFilled, OrderStatus, TradingMode

__all__ = ["record_fill", "record_order"]

_ORDER_TYPES = {
    OrderKind.MARKET_IOC: "MARKET",
    OrderKind.LIMIT_GTC: "LIMIT",
    OrderKind.LIMIT_GTD: "LIMIT_GTD",
}


async def record_order(
    connection: AsyncConnection,
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
    """Insert the order, or bring its state up to date; the request itself never changes."""
    statement = insert(Order).values(
        client_order_id=request.client_order_id, intent_id=intent_id,
        venue_order_id=venue_order_id, product_id=request.product_id,
        side=request.side.value, order_type=_ORDER_TYPES[request.kind],
        post_only=request.post_only, base_size=request.base_size,
        quote_size=request.quote_size, limit_price=request.limit_price, status=status.value,
        filled_size=filled_size, average_price=average_price, reason=reason, mode=mode.value,
    )  # fmt: skip
    excluded = statement.excluded
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["client_order_id"],
            set_={
                "status": excluded.status,
                "filled_size": excluded.filled_size,
                "average_price": excluded.average_price,
                "reason": excluded.reason,
                "venue_order_id": excluded.venue_order_id,
                "updated_at": excluded.updated_at,
            },
        )  # fmt: skip
    )


async def record_fill(
    connection: AsyncConnection, fill: OrderFilled, *, venue: str, arrival_time: datetime
) -> bool:
    """Insert ``fill`` once; False when its (venue, trade id) was already recorded."""
    statement = (
        insert(Fill)
        .values(
            venue=venue,
            trade_id=fill.trade_id,
            client_order_id=fill.client_order_id,
            product_id=fill.product_id,
            side=fill.side.value,
            price=fill.price,
            size=fill.size,
            fee=fill.fee,
            liquidity=fill.liquidity.value,
            arrival_mid=fill.arrival_mid,
            arrival_time=arrival_time,
            filled_at=fill.filled_at,
            mode=fill.mode.value,
        )  # fmt: skip
        .on_conflict_do_nothing(index_elements=["venue", "trade_id"])
        .returning(Fill.id)
    )
    return (await connection.execute(statement)).first() is not None
