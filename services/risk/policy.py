"""The policy of policy.yaml as pure functions: approve, resize or reject a proposal.

Entries pass every gate (trading state, loss limits, product flags, trade counters,
cooldown) and are then sized down to fit every cap (asset and theme exposure as % of
marked-to-market equity, hourly and daily budgets, the venue's maximum). Exposure counts
what is held at its mark plus what approved entries may still buy. Exits are judged
only on whether there is something to sell: no entry limit ever blocks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from services.risk.ledger import DAY, HOUR, EntryWindows, OpenIntents
from services.risk.portfolio import Portfolio
from services.risk.state import EquityWatch, TradingState
from shared.config.models import RiskPolicy
from shared.messages import DecisionOutcome, TradeProposed
from shared.money import Rounding, Side, quantize

__all__ = ["Book", "ProductRules", "Verdict", "decide_entry", "decide_exit", "exposure"]

ZERO = Decimal(0)
EXIT_REASONS = frozenset(
    {"unsupported_side", "flatten_in_progress", "nothing_held", "dust", "exit_in_flight"}
)


@dataclass(frozen=True)
class ProductRules:
    """What risk knows of a product: our universe's view and the venue's."""

    product_id: str
    theme: str | None
    enabled: bool  # universe.yaml
    listed_by_venue: bool  # the venue's metadata is known
    entries_allowed: bool  # the venue takes new orders
    quote_increment: Decimal = Decimal("0.01")
    base_increment: Decimal = Decimal("0.00000001")
    quote_min_size: Decimal = ZERO
    quote_max_size: Decimal | None = None
    base_min_size: Decimal = ZERO


@dataclass
class Book:
    """Everything the policy reads; the engine owns it and keeps it current."""

    policy: RiskPolicy
    portfolio: Portfolio
    intents: OpenIntents
    windows: EntryWindows
    state: TradingState
    watch: EquityWatch
    rules: Mapping[str, ProductRules]
    flattening: frozenset[str] = frozenset()
    max_proposal_age: timedelta | None = None  # older entries are history, not signals


@dataclass(frozen=True)
class Verdict:
    outcome: DecisionOutcome
    approved_quote: Decimal
    reasons: tuple[str, ...] = ()
    exit_base: Decimal | None = None

    @classmethod
    def reject(cls, reasons: list[str]) -> Verdict:
        return cls(DecisionOutcome.REJECTED, ZERO, tuple(reasons))


def exposure(book: Book, product_id: str) -> Decimal:
    """Long value at the mark plus what open entries on the product may still buy."""
    held = max(ZERO, book.portfolio.value(product_id))
    return held + book.intents.reserved(product_id)


def theme_exposure(book: Book, theme: str) -> Decimal:
    products = (product for product, rules in book.rules.items() if rules.theme == theme)
    return sum((exposure(book, product) for product in products), ZERO)


def open_trades(book: Book) -> set[str]:
    """Products with a real (non-dust) long position or an entry still in flight."""
    return set(book.portfolio.held(book.policy.dust_threshold_usd)) | book.intents.entry_products()


def decide_entry(proposal: TradeProposed, book: Book, now: datetime) -> Verdict:
    gates = _entry_gates(proposal, book, now)
    if gates:
        return Verdict.reject(gates)
    rules = book.rules[proposal.product_id]
    requested = proposal.quote_size
    rooms = _headrooms(proposal.product_id, rules, book, now)
    fitted = min([requested, *rooms.values()])
    approved = quantize(fitted, rules.quote_increment, Rounding.FLOOR) if fitted > 0 else ZERO
    binding = [reason for reason, room in rooms.items() if room < requested]
    if approved < requested and not binding:
        binding = ["quote_increment"]
    minimum = max(book.policy.min_trade_usd, rules.quote_min_size)
    if approved < minimum or approved <= 0:
        return Verdict.reject([*binding, "below_min_trade"])
    if approved < requested:
        return Verdict(DecisionOutcome.RESIZED, approved, tuple(binding))
    return Verdict(DecisionOutcome.APPROVED, approved)


def _entry_gates(proposal: TradeProposed, book: Book, now: datetime) -> list[str]:
    policy, equity = book.policy, book.portfolio.equity()
    reasons: list[str] = []
    if proposal.side is not Side.BUY:
        reasons.append("unsupported_side")
    if book.state.flatten_id is not None:
        reasons.append("flatten_in_progress")
    elif not book.state.entries_allowed:
        reasons.append("trading_paused")
    if book.watch.day_loss_pct(equity) >= policy.daily_loss_limit_pct:
        reasons.append("daily_loss_limit")
    if book.watch.drawdown_pct(equity) >= policy.max_drawdown_pct:
        reasons.append("max_drawdown")
    if equity <= 0:
        reasons.append("no_equity")
    if book.max_proposal_age is not None and now - proposal.decided_at > book.max_proposal_age:
        reasons.append("stale_proposal")
    reasons += _product_gates(book.rules.get(proposal.product_id))
    reasons += _counter_gates(proposal.product_id, book, now)
    return reasons


def _product_gates(rules: ProductRules | None) -> list[str]:
    if rules is None or rules.theme is None:
        return ["product_not_in_universe"]
    if not rules.enabled:
        return ["product_disabled"]
    if not rules.listed_by_venue:
        return ["product_metadata_missing"]
    if not rules.entries_allowed:
        return ["product_entries_halted"]
    return []


def _counter_gates(product_id: str, book: Book, now: datetime) -> list[str]:
    policy, reasons = book.policy, []
    if book.windows.count(now, HOUR) >= policy.max_trades_per_hour:
        reasons.append("max_trades_per_hour")
    if book.windows.count(now, DAY) >= policy.max_trades_per_day:
        reasons.append("max_trades_per_day")
    held = open_trades(book)
    if product_id not in held and len(held) >= policy.max_open_trades:
        reasons.append("max_open_trades")
    last = book.windows.last_entry(product_id)
    if last is not None and now - last < timedelta(seconds=policy.new_trade_cooldown_s):
        reasons.append("cooldown")
    return reasons


def _headrooms(
    product_id: str, rules: ProductRules, book: Book, now: datetime
) -> dict[str, Decimal]:
    policy, equity = book.policy, book.portfolio.equity()
    rooms = {
        "asset_cap": policy.asset_cap_pct(product_id) * equity / 100 - exposure(book, product_id),
        "hourly_budget": policy.hourly_budget_usd - book.windows.quote_total(now, HOUR),
        "daily_budget": policy.daily_budget_usd - book.windows.quote_total(now, DAY),
    }
    if rules.theme is not None:
        theme_cap = policy.theme_caps_pct.get(rules.theme, ZERO)
        rooms["theme_cap"] = theme_cap * equity / 100 - theme_exposure(book, rules.theme)
    if rules.quote_max_size is not None:
        rooms["venue_max_size"] = rules.quote_max_size
    return rooms


def decide_exit(proposal: TradeProposed, book: Book) -> Verdict:
    """Sell the whole long position, unless there is none or an exit is already working."""
    product_id = proposal.product_id
    if proposal.side is not Side.SELL:
        return Verdict.reject(["unsupported_side"])
    if product_id in book.flattening:
        return Verdict.reject(["flatten_in_progress"])
    size = exit_size(book, product_id)
    if size is None:
        reason = "dust" if book.portfolio.base(product_id) > 0 else "nothing_held"
        return Verdict.reject([reason])
    if book.intents.exit_in_flight(product_id):
        return Verdict.reject(["exit_in_flight"])
    return Verdict(DecisionOutcome.APPROVED, proposal.quote_size, exit_base=size)


def exit_size(book: Book, product_id: str) -> Decimal | None:
    """The base an exit sells (the long position, to the venue's increment); None if dust."""
    base = book.portfolio.base(product_id)
    if base <= 0 or book.portfolio.value(product_id) < book.policy.dust_threshold_usd:
        return None
    rules = book.rules.get(product_id)
    if rules is not None:
        base = quantize(base, rules.base_increment, Rounding.FLOOR)
        if base < rules.base_min_size:  # the venue takes no order this small: a leftover
            return None
    return base if base > 0 else None
