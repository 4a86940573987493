"""One valid payload of every message type, for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from shared.messages import (
    BookLevel,
    BookUpdated,
    CancelOrders,
    CandleClosed,
    DecisionOutcome,
    IntentFinished,
    IntentKind,
    Liquidity,
    LiquidityPreference,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    Payload,
    PlaceOrder,
    ProposalAction,
    ProposalDecided,
    TickUpdated,
    TradeProposed,
    TradingMode,
    TradingStateChanged,
)
from shared.money import Side

AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def tick(product_id: str = "BTC-USD", bid: str = "64000.01", ask: str = "64000.02") -> TickUpdated:
    return TickUpdated(
        product_id=product_id,
        best_bid=Decimal(bid),
        best_bid_size=Decimal("0.51000000"),
        best_ask=Decimal(ask),
        best_ask_size=Decimal("1.2"),
        last_price=Decimal("64000.015"),
        last_size=Decimal("0.00010000"),
        exchange_time=AT,
    )


def every_payload() -> list[Payload]:
    return [
        tick(),
        CandleClosed(
            product_id="ETH-USD", granularity_s=60, start=AT, open=Decimal("3000.10"),
            high=Decimal("3010"), low=Decimal("2999.99"), close=Decimal("3005.5"),
            volume=Decimal("12.34567890"),
        ),
        BookUpdated(
            product_id="SOL-USD",
            bids=(BookLevel(price=Decimal("150.01"), size=Decimal("3")),
                  BookLevel(price=Decimal("150.00"), size=Decimal("10.5"))),
            asks=(BookLevel(price=Decimal("150.03"), size=Decimal("2.25")),),
            exchange_time=AT,
        ),
        TradeProposed(
            proposal_id="p-1", strategy="ema_cross", product_id="BTC-USD", side=Side.BUY,
            action=ProposalAction.ENTRY, quote_size=Decimal("250.00"),
            reference_mid=Decimal("64000.015"), stop_loss=Decimal("62500.00"),
            take_profit=Decimal("67000.00"), granularity_s=300, candle_start=AT,
            reason="fast EMA crossed above slow", decided_at=AT,
        ),
        ProposalDecided(
            proposal_id="p-1", product_id="BTC-USD", outcome=DecisionOutcome.RESIZED,
            requested_quote_size=Decimal("250.00"), approved_quote_size=Decimal("180.00"),
            strategy="ema_cross", reasons=("theme_cap",), decided_at=AT,
        ),
        PlaceOrder(
            intent_id="i-1", kind=IntentKind.ENTRY, product_id="BTC-USD", side=Side.BUY,
            quote_size=Decimal("180.00"), reference_mid=Decimal("64000.015"),
            liquidity=LiquidityPreference.MAKER_FIRST, proposal_id="p-1", issued_at=AT,
        ),
        OrderUpdated(
            client_order_id="c-1", intent_id="i-1", venue_order_id="v-1", product_id="BTC-USD",
            side=Side.BUY, status=OrderStatus.PARTIALLY_FILLED, filled_size=Decimal("0.001"),
            average_price=Decimal("64000.01"), mode=TradingMode.PAPER, updated_at=AT,
        ),
        OrderFilled(
            client_order_id="c-1", intent_id="i-1", trade_id="t-1", product_id="BTC-USD",
            side=Side.BUY, price=Decimal("64000.01"), size=Decimal("0.001"),
            fee=Decimal("0.0384000060"), liquidity=Liquidity.MAKER,
            arrival_mid=Decimal("64000.015"), mode=TradingMode.PAPER, filled_at=AT,
        ),
        IntentFinished(
            intent_id="i-1", kind=IntentKind.ENTRY, product_id="BTC-USD", side=Side.BUY,
            status=OrderStatus.CANCELLED, filled_base=Decimal("0.001"),
            filled_quote=Decimal("64.00001"), reason="maker wait expired", mode=TradingMode.PAPER,
            finished_at=AT,
        ),
        CancelOrders(
            command_id="pause:1", kinds=(IntentKind.ENTRY,), reason="paused: news", issued_at=AT,
        ),
        TradingStateChanged(
            action="FLATTEN", actor="alice", reason="exchange incident", entries_allowed=False,
            flatten_id="f-1", changed_at=AT,
        ),
    ]  # fmt: skip
