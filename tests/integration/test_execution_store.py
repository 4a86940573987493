"""Execution's Postgres, written and read back: what a restart resumes an intent from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.execution.orders import RecordedOrder, client_order_id
from services.execution.store import ExecutionStore, Progress
from shared.clock import SimulatedClock
from shared.db import upgrade
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import (
    IntentFinished,
    Liquidity,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    TradingMode,
)
from shared.money import Side
from tests.support.execution import place_order

START = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
INTENT = "entry:BTC-USD:1"
COID = client_order_id(INTENT, 0)


def _request(limit: str) -> OrderRequest:
    return OrderRequest(
        COID, "BTC-USD", Side.BUY, OrderKind.LIMIT_GTC, base_size=Decimal("0.002"),
        limit_price=Decimal(limit), post_only=True,
    )  # fmt: skip


def _fill(trade_id: str, size: str) -> OrderFilled:
    return OrderFilled(
        client_order_id=COID, intent_id=INTENT, trade_id=trade_id, product_id="BTC-USD",
        side=Side.BUY, price=Decimal("49999.99"), size=Decimal(size), fee=Decimal("0.15"),
        liquidity=Liquidity.MAKER, arrival_mid=Decimal("50000"), mode=TradingMode.PAPER,
        filled_at=START + timedelta(seconds=2),
    )  # fmt: skip


def _opened(filled: str) -> OrderUpdated:
    return OrderUpdated(
        client_order_id=COID, intent_id=INTENT, venue_order_id="v-1", product_id="BTC-USD",
        side=Side.BUY, status=OrderStatus.PARTIALLY_FILLED, filled_size=Decimal(filled),
        average_price=Decimal("49999.99"), mode=TradingMode.PAPER, updated_at=START,
    )  # fmt: skip


async def test_an_intent_is_taken_on_once_and_every_step_is_there_after_a_restart(
    pg_url, pg_engine, closing
):  # fmt: skip
    upgrade(pg_url)
    clock = SimulatedClock(START)
    store = ExecutionStore(pg_engine, TradingMode.PAPER, "paper")
    closing.push_async_callback(store.close)
    command = place_order(INTENT, clock, base="0.002")
    first = Progress(sent=[_request("49999.99")])
    assert await store.add_intent(command, 123, START, first) is True
    # taken on before: nothing is written, not even the (different) first order
    assert await store.add_intent(command, 456, START, Progress(sent=[_request("1")])) is False

    step = Progress(updates=[_opened("0.001")], fills=[_fill("t-1", "0.001")],
                    cancel_reason="paused: operator")  # fmt: skip
    assert await store.save(command, step, command.issued_at) == [_fill("t-1", "0.001")]
    replay = Progress(fills=[_fill("t-1", "0.001"), _fill("t-2", "0.0005")])
    assert await store.save(command, replay, command.issued_at) == [_fill("t-2", "0.0005")]

    (stored,) = await store.unreported()
    assert (stored.command, stored.origin_ts, stored.started_at) == (command, 123, START)
    assert stored.cancel_reason == "paused: operator"
    assert stored.finished is None
    assert stored.orders == [RecordedOrder(
        request=_request("49999.99"), status=OrderStatus.PARTIALLY_FILLED,
        venue_order_id="v-1", filled_base=Decimal("0.001"),
        filled_quote=Decimal("0.001") * Decimal("49999.99"), fees=Decimal("0.30"),
    )]  # fmt: skip
    assert [f.trade_id for f in await store.fills_of(INTENT)] == ["t-1", "t-2"]

    # an ending keeps the cancel reason an earlier step set
    ended_at = START + timedelta(seconds=5)
    finished = IntentFinished(
        intent_id=INTENT, kind=command.kind, product_id="BTC-USD", side=Side.BUY,
        status=OrderStatus.CANCELLED, filled_base=Decimal("0.0015"),
        filled_quote=Decimal("74.999985"), reason="paused: operator", mode=TradingMode.PAPER,
        finished_at=ended_at,
    )  # fmt: skip
    await store.save(command, Progress(finished=finished), command.issued_at)
    (stored,) = await store.unreported()
    assert stored.cancel_reason == "paused: operator"
    assert stored.finished == (OrderStatus.CANCELLED, "paused: operator", ended_at)
    # and a step that sets only a cancel reason keeps the ending
    await store.save(command, Progress(cancel_reason="flatten: operator"), command.issued_at)
    (stored,) = await store.unreported()
    assert stored.cancel_reason == "flatten: operator"
    assert stored.finished == (OrderStatus.CANCELLED, "paused: operator", ended_at)
    assert await store.finished_intent(INTENT) == ("CANCELLED", "paused: operator")

    await store.mark_reported(INTENT)
    assert await store.unreported() == []
