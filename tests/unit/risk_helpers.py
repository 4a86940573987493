"""Builders for the risk core's tests: a policy, product rules, proposals, fills, an engine."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from services.risk.engine import RiskEngine
from services.risk.policy import ProductRules
from services.risk.portfolio import AppliedFill
from services.risk.state import EquityWatch, TradingState
from shared.config.models import RiskPolicy
from shared.messages import (
    IntentFinished,
    IntentKind,
    OrderStatus,
    ProposalAction,
    TradeProposed,
    TradingMode,
)
from shared.money import Side

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
D = Decimal

THEMES = {
    "BTC-USD": "store_of_value",
    "ETH-USD": "smart_contracts",
    "SOL-USD": "smart_contracts",
    "XRP-USD": "payments",
    "UNI-USD": "defi",
}

_ids = count(1)


def policy(**changes: Any) -> RiskPolicy:
    """A policy roomy enough that a test meets only the limit it sets on purpose."""
    base: dict[str, Any] = {
        "theme_caps_pct": {
            "store_of_value": D(100), "smart_contracts": D(100), "payments": D(100),
            "defi": D(100),
        },
        "asset_caps_pct": {},
        "default_asset_cap_pct": D(100),
        "stop_loss_pct": D(3),
        "take_profit_pct": D(6),
        "max_open_trades": 50,
        "max_trades_per_hour": 100,
        "max_trades_per_day": 1000,
        "hourly_budget_usd": D(1_000_000),
        "daily_budget_usd": D(10_000_000),
        "new_trade_cooldown_s": 0,
        "open_trades_lookback_s": 3600,
        "dust_threshold_usd": D(1),
        "min_trade_usd": D(10),
        "daily_loss_limit_pct": D(3),
        "max_drawdown_pct": D(10),
    }  # fmt: skip
    base.update(changes)
    return RiskPolicy(**base)


def rules(product_id: str, **changes: Any) -> ProductRules:
    """Rules of a listed, enabled product in its THEMES theme; ``theme=None``: in none."""
    fields: dict[str, Any] = {
        "product_id": product_id,
        "theme": THEMES.get(product_id),
        "enabled": True,
        "listed_by_venue": True,
        "entries_allowed": True,
    }
    fields.update(changes)
    return ProductRules(**fields)


def universe(*overrides: ProductRules) -> dict[str, ProductRules]:
    """Every product of THEMES with default rules, except those given."""
    every = {product: rules(product) for product in THEMES}
    every.update({r.product_id: r for r in overrides})
    return every


def engine(
    risk: RiskPolicy | None = None,
    capital: str | Decimal = "10000",
    *,
    product_rules: dict[str, ProductRules] | None = None,
    state: TradingState | None = None,
    watch: EquityWatch | None = None,
) -> RiskEngine:
    return RiskEngine(
        risk or policy(), D(capital), rules=product_rules if product_rules is not None
        else universe(), state=state, watch=watch,
    )  # fmt: skip


def entry(
    product_id: str = "BTC-USD",
    quote: str | Decimal = "100",
    *,
    proposal_id: str | None = None,
    mid: str | Decimal = "100",
    stop_loss: str | Decimal | None = None,
    take_profit: str | Decimal | None = None,
    side: Side = Side.BUY,
    at: datetime = NOW,
) -> TradeProposed:
    return TradeProposed(
        proposal_id=proposal_id or f"p-{next(_ids)}", strategy="ema_cross",
        product_id=product_id, side=side, action=ProposalAction.ENTRY, quote_size=D(quote),
        reference_mid=D(mid), stop_loss=None if stop_loss is None else D(stop_loss),
        take_profit=None if take_profit is None else D(take_profit), decided_at=at,
    )  # fmt: skip


def exit_(
    product_id: str = "BTC-USD",
    *,
    proposal_id: str | None = None,
    quote: str | Decimal = "100",
    mid: str | Decimal = "100",
    side: Side = Side.SELL,
    at: datetime = NOW,
) -> TradeProposed:
    return TradeProposed(
        proposal_id=proposal_id or f"x-{next(_ids)}", strategy="ema_cross",
        product_id=product_id, side=side, action=ProposalAction.EXIT, quote_size=D(quote),
        reference_mid=D(mid), decided_at=at,
    )  # fmt: skip


def fill(
    product_id: str = "BTC-USD",
    side: Side = Side.BUY,
    price: str | Decimal = "100",
    size: str | Decimal = "1",
    fee: str | Decimal = "0",
    *,
    intent_id: str = "outside",
    trade_id: str | None = None,
) -> AppliedFill:
    return AppliedFill(
        trade_id=trade_id or f"t-{next(_ids)}", intent_id=intent_id, product_id=product_id,
        side=side, price=D(price), size=D(size), fee=D(fee),
    )  # fmt: skip


def finished(
    intent_id: str,
    product_id: str = "BTC-USD",
    *,
    kind: IntentKind = IntentKind.ENTRY,
    side: Side = Side.BUY,
    status: OrderStatus = OrderStatus.CANCELLED,
    filled_base: str | Decimal = "0",
    filled_quote: str | Decimal = "0",
    at: datetime = NOW,
) -> IntentFinished:
    return IntentFinished(
        intent_id=intent_id, kind=kind, product_id=product_id, side=side, status=status,
        filled_base=D(filled_base), filled_quote=D(filled_quote), mode=TradingMode.PAPER,
        finished_at=at,
    )  # fmt: skip


def hold(
    risk: RiskEngine, product_id: str, base: str | Decimal, price: str | Decimal,
    at: datetime = NOW,
) -> None:  # fmt: skip
    """Give ``risk`` a long position bought at ``price`` and mark it there."""
    risk.on_fill(fill(product_id, Side.BUY, price, base), at)
    risk.book.portfolio.mark(product_id, D(price))


def tick(risk: RiskEngine, product_id: str, mid: str | Decimal, at: datetime = NOW) -> Any:
    """A tick whose bid and ask are both ``mid``."""
    return risk.on_tick(product_id, D(mid), D(mid), at)


def reasons_of(decisions: Iterable[Any]) -> list[tuple[str, ...]]:
    return [decision.reasons for decision in decisions]
