"""Sanity checks across keys and files. Each has an id, a formula and a reason.

A check returns problems: errors block start, warnings are printed and do not block.
``docs/configuration.md`` lists every check; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.config import cross_checks as cross
from shared.config.cross_checks import POLICY
from shared.config.models import AppConfig
from shared.config.problems import Problem, error_at

__all__ = ["CHECKS", "MAX_FEE_BPS", "Check", "run_checks"]

MAX_FEE_BPS = Decimal("200")
"""Above Coinbase's highest published tier (60 bps maker / 120 bps taker) with room to spare."""

Problems = Iterator[Problem]


@dataclass(frozen=True)
class Check:
    id: str
    formula: str
    reason: str
    run: Callable[[AppConfig, Mapping[str, str]], Problems]


# --- the ten checks of the product's history ------------------------------------------


def theme_caps_total(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    caps = config.policy.risk.theme_caps_pct
    total = sum(caps.values(), Decimal(0))
    if total > 100:
        yield error_at(
            "theme_caps_total", POLICY, "risk.theme_caps_pct",
            f"theme caps sum to {total}%, more than the whole equity",
            "lower the theme caps so they sum to at most 100", total_pct=total,
        )  # fmt: skip


def asset_cap_within_theme(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    for product in config.universe.products:
        theme_cap = risk.theme_caps_pct.get(product.theme)
        if theme_cap is None:
            continue  # reported by universe_theme_capped
        cap = risk.asset_cap_pct(product.product_id)
        if cap > theme_cap:
            explicit = product.product_id in risk.asset_caps_pct
            path = (
                f"risk.asset_caps_pct.{product.product_id}"
                if explicit
                else "risk.default_asset_cap_pct"
            )
            yield error_at(
                "asset_cap_within_theme", POLICY, path,
                f"{product.product_id} may take {cap}% but its theme {product.theme!r} "
                f"allows only {theme_cap}%",
                f"set the asset cap to at most {theme_cap}", asset_cap_pct=cap,
                theme_cap_pct=theme_cap, product_id=product.product_id, theme=product.theme,
            )  # fmt: skip


def stop_below_take_profit(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    if risk.stop_loss_pct >= risk.take_profit_pct:
        yield error_at(
            "stop_below_take_profit", POLICY, "risk.stop_loss_pct",
            f"stop loss {risk.stop_loss_pct}% is not below take profit {risk.take_profit_pct}%",
            "make stop_loss_pct smaller than take_profit_pct",
            stop_loss_pct=risk.stop_loss_pct, take_profit_pct=risk.take_profit_pct,
        )  # fmt: skip


def daily_trades_reachable(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    if risk.max_trades_per_hour * 24 < risk.max_trades_per_day:
        yield error_at(
            "daily_trades_reachable", POLICY, "risk.max_trades_per_day",
            f"{risk.max_trades_per_day} trades a day can never be reached at "
            f"{risk.max_trades_per_hour} an hour (at most {risk.max_trades_per_hour * 24})",
            f"lower max_trades_per_day to at most {risk.max_trades_per_hour * 24} "
            "or raise max_trades_per_hour",
            max_trades_per_hour=risk.max_trades_per_hour,
            max_trades_per_day=risk.max_trades_per_day,
        )  # fmt: skip


def budgets_consistent(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    hourly, daily = risk.hourly_budget_usd, risk.daily_budget_usd
    if hourly > daily:
        yield error_at(
            "budgets_consistent", POLICY, "risk.hourly_budget_usd",
            f"hourly budget ${hourly} exceeds the daily budget ${daily}",
            "make hourly_budget_usd at most daily_budget_usd",
            hourly_budget_usd=hourly, daily_budget_usd=daily,
        )  # fmt: skip
    if hourly * 24 < daily:
        yield error_at(
            "budgets_consistent", POLICY, "risk.daily_budget_usd",
            f"daily budget ${daily} can never be spent at ${hourly} an hour "
            f"(at most ${hourly * 24})",
            f"lower daily_budget_usd to at most {hourly * 24} or raise hourly_budget_usd",
            hourly_budget_usd=hourly, daily_budget_usd=daily,
        )  # fmt: skip


def ttl_order(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    execution = config.policy.execution
    maker, pending, stale = (
        execution.maker_wait_ttl_s,
        execution.pending_ttl_s,
        execution.stale_ttl_s,
    )
    if not maker < pending < stale:
        yield error_at(
            "ttl_order", POLICY, "execution",
            f"TTLs must grow: maker_wait_ttl_s {maker} < pending_ttl_s {pending} "
            f"< stale_ttl_s {stale}",
            "order the three TTLs from shortest to longest",
            maker_wait_ttl_s=maker, pending_ttl_s=pending, stale_ttl_s=stale,
        )  # fmt: skip


def fee_bounds(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    execution = config.policy.execution
    maker, taker = execution.maker_fee_bps, execution.taker_fee_bps
    for key, fee in (("maker_fee_bps", maker), ("taker_fee_bps", taker)):
        if fee > MAX_FEE_BPS:
            yield error_at(
                "fee_bounds", POLICY, f"execution.{key}",
                f"{key} {fee} bps is above any Coinbase tier (cap {MAX_FEE_BPS} bps)",
                "fees are in basis points: 0.6% is 60", fee_bps=fee, max_fee_bps=MAX_FEE_BPS,
            )  # fmt: skip
    if maker > taker:
        yield error_at(
            "fee_bounds", POLICY, "execution.maker_fee_bps",
            f"maker fee {maker} bps is above taker fee {taker} bps",
            "maker fees are at most taker fees on Coinbase", maker_fee_bps=maker,
            taker_fee_bps=taker,
        )  # fmt: skip


def cooldown_within_lookback(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    if risk.new_trade_cooldown_s >= risk.open_trades_lookback_s:
        yield error_at(
            "cooldown_within_lookback", POLICY, "risk.new_trade_cooldown_s",
            f"cooldown {risk.new_trade_cooldown_s}s is not shorter than the open-trades "
            f"lookback {risk.open_trades_lookback_s}s",
            "make new_trade_cooldown_s smaller than open_trades_lookback_s",
            new_trade_cooldown_s=risk.new_trade_cooldown_s,
            open_trades_lookback_s=risk.open_trades_lookback_s,
        )  # fmt: skip


def daily_trades_at_least_hourly(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    if risk.max_trades_per_day < risk.max_trades_per_hour:
        yield error_at(
            "daily_trades_at_least_hourly", POLICY, "risk.max_trades_per_hour",
            f"{risk.max_trades_per_hour} trades an hour can never happen under a daily cap "
            f"of {risk.max_trades_per_day}",
            "make max_trades_per_hour at most max_trades_per_day",
            max_trades_per_hour=risk.max_trades_per_hour,
            max_trades_per_day=risk.max_trades_per_day,
        )  # fmt: skip


def dust_below_min_trade(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    if risk.dust_threshold_usd >= risk.min_trade_usd:
        yield error_at(
            "dust_below_min_trade", POLICY, "risk.dust_threshold_usd",
            f"dust threshold ${risk.dust_threshold_usd} is not below the minimum trade "
            f"${risk.min_trade_usd}",
            "make dust_threshold_usd smaller than min_trade_usd",
            dust_threshold_usd=risk.dust_threshold_usd, min_trade_usd=risk.min_trade_usd,
        )  # fmt: skip


CHECKS: tuple[Check, ...] = (
    Check(
        "theme_caps_total",
        "sum(risk.theme_caps_pct) <= 100",
        "Theme caps share one equity; caps above 100% in total promise exposure that "
        "does not exist, so no cap would ever bind as a whole.",
        theme_caps_total,
    ),
    Check(
        "asset_cap_within_theme",
        "asset cap (risk.asset_caps_pct[p], else risk.default_asset_cap_pct) "
        "<= risk.theme_caps_pct[theme of p], for every universe product p",
        "An asset cap above its theme's cap is a limit the operator believes in but the "
        "theme silently overrides; sizing and alerts would disagree with the policy.",
        asset_cap_within_theme,
    ),
    Check(
        "stop_below_take_profit",
        "risk.stop_loss_pct < risk.take_profit_pct",
        "A stop at or beyond the take-profit inverts the payoff: every winner is capped "
        "below the size of every loser.",
        stop_below_take_profit,
    ),
    Check(
        "daily_trades_reachable",
        "risk.max_trades_per_hour * 24 >= risk.max_trades_per_day",
        "Otherwise the daily cap can never be reached and is not the limit it claims to be. "
        "A daily cap below 24 x hourly is fine: it binds after a few busy hours.",
        daily_trades_reachable,
    ),
    Check(
        "budgets_consistent",
        "risk.hourly_budget_usd <= risk.daily_budget_usd <= 24 * risk.hourly_budget_usd",
        "An hourly budget above the daily one never binds; a daily budget above 24 hours of "
        "hourly budget can never be spent.",
        budgets_consistent,
    ),
    Check(
        "ttl_order",
        "execution.maker_wait_ttl_s < execution.pending_ttl_s < execution.stale_ttl_s",
        "The order state machine escalates in that order: give up on maker, then resolve an "
        "unconfirmed order, then cancel anything stale. Out of order, a step never runs.",
        ttl_order,
    ),
    Check(
        "fee_bounds",
        f"0 <= execution.maker_fee_bps <= execution.taker_fee_bps <= {MAX_FEE_BPS}",
        "Fees decide whether a strategy can be profitable; a value in percent instead of "
        "basis points, or maker above taker, makes every backtest and PAPER figure wrong. "
        "The bound admits Coinbase's highest tier today (60 / 120 bps).",
        fee_bounds,
    ),
    Check(
        "cooldown_within_lookback",
        "risk.new_trade_cooldown_s < risk.open_trades_lookback_s",
        "The cooldown is enforced from trades seen in the lookback window; a cooldown longer "
        "than the window forgets the trade it is cooling down from.",
        cooldown_within_lookback,
    ),
    Check(
        "daily_trades_at_least_hourly",
        "risk.max_trades_per_day >= risk.max_trades_per_hour",
        "An hourly cap above the daily cap can never be reached.",
        daily_trades_at_least_hourly,
    ),
    Check(
        "dust_below_min_trade",
        "risk.dust_threshold_usd < risk.min_trade_usd",
        "Positions below the dust threshold are ignored as leftovers; if the smallest trade "
        "is dust, a fresh position could be ignored and never exited.",
        dust_below_min_trade,
    ),
    Check(
        "strategy_products_tradable",
        "every product of an enabled strategy is in universe.yaml and enabled",
        "A strategy on a product outside the universe has no theme, tier or metadata; risk "
        "would reject every proposal.",
        cross.strategy_products_tradable,
    ),
    Check(
        "strategy_size_tradable",
        "risk.min_trade_usd <= strategy.quote_size_usd <= risk.hourly_budget_usd",
        "A proposal outside that range is rejected every time: the strategy can never trade.",
        cross.strategy_size_tradable,
    ),
    Check(
        "strategy_params_ordered",
        "ema_cross: fast_period < slow_period; mean_reversion: oversold < overbought",
        "Otherwise the strategy cannot tell a cross or a reversal and refuses to start.",
        cross.strategy_params_ordered,
    ),
    Check(
        "universe_theme_capped",
        "theme of every universe product in risk.theme_caps_pct",
        "Exposure is capped by theme; a product without a theme cap would be uncapped.",
        cross.universe_theme_capped,
    ),
    Check(
        "universe_tier_priced",
        "tier of every universe product in universe.tiers",
        "The cost model needs each tier's base slippage; without it fills cannot be priced.",
        cross.universe_tier_priced,
    ),
    Check(
        "unique_names",
        "product ids in universe.yaml and strategy names are unique",
        "A duplicate silently overrides the first entry.",
        cross.unique_names,
    ),
    Check(
        "rate_limits_within_coinbase",
        "rate_per_s + burst - 1 <= Coinbase's limit per channel "
        "(public 10/s, private 30/s, websocket 8/s)",
        "A token bucket lets up to rate + burst - 1 requests out in one second; above the "
        "venue's per-second limit that means 429s and, repeated, bans.",
        cross.rate_limits_within_coinbase,
    ),
    Check(
        "live_credentials_present",
        "TRADING_MODE=LIVE implies CB_API_KEY, CB_API_SECRET and CONTROL_API_TOKEN are set",
        "LIVE without credentials fails at the first order; without the control token the "
        "operator cannot pause or flatten. Only presence is checked; values are never read "
        "into the report.",
        cross.live_credentials_present,
    ),
    Check(
        "caps_that_never_bind",
        "warning: theme cap > sum of its enabled assets' caps; a cap for a product outside "
        "the universe; daily_loss_limit_pct > max_drawdown_pct",
        "Legal, but a limit that can never act is usually a typo.",
        cross.caps_that_never_bind,
    ),
)


def run_checks(config: AppConfig, environ: Mapping[str, str]) -> list[Problem]:
    """Every problem every check finds, errors first."""
    problems = [problem for check in CHECKS for problem in check.run(config, environ)]
    return sorted(problems, key=lambda problem: problem.severity != "error")
