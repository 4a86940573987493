"""Checks that relate one config file to another, or to the environment, plus warnings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from decimal import Decimal

from shared.config.models import AppConfig, EmaCrossParams, MeanReversionParams
from shared.config.problems import Problem, error_at, warning_at

__all__ = [
    "COINBASE_LIMITS_PER_S",
    "LIVE_ENV",
    "caps_that_never_bind",
    "live_credentials_present",
    "rate_limits_within_coinbase",
    "strategy_products_tradable",
    "strategy_size_tradable",
    "unique_names",
    "universe_theme_capped",
    "universe_tier_priced",
]

POLICY, UNIVERSE, RATELIMITS, STRATEGIES = (
    "policy.yaml", "universe.yaml", "ratelimits.yaml", "strategies.yaml",
)  # fmt: skip
COINBASE_LIMITS_PER_S = {"public": Decimal(10), "private": Decimal(30), "websocket": Decimal(8)}
"""Coinbase Advanced Trade: public REST 10/s per IP, private REST 30/s per user, and a safe
8/s for WebSocket connects and subscribes per IP."""
LIVE_ENV = ("CB_API_KEY", "CB_API_SECRET", "CONTROL_API_TOKEN")
Problems = Iterator[Problem]


def strategy_products_tradable(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    for index, strategy in enumerate(config.strategies.strategies):
        if not strategy.enabled:
            continue
        for position, product_id in enumerate(strategy.products):
            product = config.universe.product(product_id)
            if product is None or not product.enabled:
                state = "not in the universe" if product is None else "disabled in the universe"
                yield error_at(
                    "strategy_products_tradable", STRATEGIES,
                    f"strategies[{index}].products[{position}]",
                    f"strategy {strategy.name!r} trades {product_id}, which is {state}",
                    f"add {product_id} to universe.yaml enabled, or remove it here",
                    product_id=product_id, strategy=strategy.name,
                )  # fmt: skip


def strategy_params_ordered(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    for index, strategy in enumerate(config.strategies.strategies):
        params = strategy.params
        if isinstance(params, EmaCrossParams) and params.fast_period >= params.slow_period:
            yield error_at(
                "strategy_params_ordered", STRATEGIES, f"strategies[{index}].params.fast_period",
                f"strategy {strategy.name!r}: fast_period {params.fast_period} is not below "
                f"slow_period {params.slow_period}",
                "make fast_period smaller than slow_period", strategy=strategy.name,
            )  # fmt: skip
        if isinstance(params, MeanReversionParams) and params.oversold >= params.overbought:
            yield error_at(
                "strategy_params_ordered", STRATEGIES, f"strategies[{index}].params.oversold",
                f"strategy {strategy.name!r}: oversold {params.oversold} is not below "
                f"overbought {params.overbought}",
                "make oversold smaller than overbought", strategy=strategy.name,
            )  # fmt: skip


def strategy_size_tradable(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    for index, strategy in enumerate(config.strategies.strategies):
        size = strategy.quote_size_usd
        if size < risk.min_trade_usd or size > risk.hourly_budget_usd:
            yield error_at(
                "strategy_size_tradable", STRATEGIES, f"strategies[{index}].quote_size_usd",
                f"strategy {strategy.name!r} proposes ${size}, outside what risk can approve "
                f"(min_trade_usd ${risk.min_trade_usd} to hourly_budget_usd "
                f"${risk.hourly_budget_usd})",
                "pick a quote size between min_trade_usd and hourly_budget_usd",
                quote_size_usd=size, min_trade_usd=risk.min_trade_usd,
                hourly_budget_usd=risk.hourly_budget_usd,
            )  # fmt: skip


def universe_theme_capped(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    caps = config.policy.risk.theme_caps_pct
    for index, product in enumerate(config.universe.products):
        if product.theme not in caps:
            yield error_at(
                "universe_theme_capped", UNIVERSE, f"products[{index}].theme",
                f"{product.product_id}'s theme {product.theme!r} has no cap in policy.yaml",
                f"add {product.theme} to risk.theme_caps_pct or use one of {sorted(caps)}",
                product_id=product.product_id, theme=product.theme,
            )  # fmt: skip


def universe_tier_priced(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    for index, product in enumerate(config.universe.products):
        if product.tier not in config.universe.tiers:
            yield error_at(
                "universe_tier_priced", UNIVERSE, f"products[{index}].tier",
                f"{product.product_id}'s tier {int(product.tier)} has no slippage figure",
                f"add tier {int(product.tier)} with base_slippage_bps under tiers",
                product_id=product.product_id, tier=int(product.tier),
            )  # fmt: skip


def unique_names(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    products = Counter(product.product_id for product in config.universe.products)
    for product_id, count in products.items():
        if count > 1:
            yield error_at(
                "unique_names", UNIVERSE, "products",
                f"{product_id} is listed {count} times", "list each product once",
                product_id=product_id,
            )  # fmt: skip
    names = Counter(strategy.name for strategy in config.strategies.strategies)
    for name, count in names.items():
        if count > 1:
            yield error_at(
                "unique_names", STRATEGIES, "strategies",
                f"strategy name {name!r} is used {count} times", "give each strategy its own name",
                strategy=name,
            )  # fmt: skip


def rate_limits_within_coinbase(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    for channel, limit in COINBASE_LIMITS_PER_S.items():
        budget = getattr(config.ratelimits, channel)
        most_in_a_second = budget.rate_per_s + budget.burst - 1
        if most_in_a_second > limit:
            yield error_at(
                "rate_limits_within_coinbase", RATELIMITS, f"{channel}.rate_per_s",
                f"{channel} allows up to {most_in_a_second} requests in one second "
                f"(rate_per_s + burst - 1), above Coinbase's limit of {limit}",
                f"lower {channel}.rate_per_s or {channel}.burst so that rate + burst - 1 "
                f"<= {limit}",
                rate_per_s=budget.rate_per_s, burst=budget.burst, limit_per_s=limit,
            )  # fmt: skip


def live_credentials_present(config: AppConfig, env: Mapping[str, str]) -> Problems:
    if env.get("TRADING_MODE", "PAPER").strip().upper() != "LIVE":
        return
    missing = [name for name in LIVE_ENV if not env.get(name, "").strip()]
    if missing:
        yield error_at(
            "live_credentials_present", "environment", "TRADING_MODE",
            f"LIVE trading needs {', '.join(missing)} in the environment",
            "export the variables (values are never printed) or run in PAPER mode",
            missing=missing,
        )  # fmt: skip


def caps_that_never_bind(config: AppConfig, _env: Mapping[str, str]) -> Problems:
    risk = config.policy.risk
    for theme, cap in risk.theme_caps_pct.items():
        members = [p.product_id for p in config.universe.enabled_products() if p.theme == theme]
        reachable = sum((risk.asset_cap_pct(product_id) for product_id in members), Decimal(0))
        if members and cap > reachable:
            yield warning_at(
                "caps_that_never_bind", POLICY, f"risk.theme_caps_pct.{theme}",
                f"theme {theme!r} cap {cap}% never binds: its assets' caps add up to {reachable}%",
                "lower the theme cap or raise its assets' caps", theme_cap_pct=cap,
                asset_caps_total_pct=reachable,
            )  # fmt: skip
    universe = {product.product_id for product in config.universe.products}
    for product_id in risk.asset_caps_pct:
        if product_id not in universe:
            yield warning_at(
                "caps_that_never_bind", POLICY, f"risk.asset_caps_pct.{product_id}",
                f"{product_id} has a cap but is not in the universe",
                "remove the cap or add the product to universe.yaml", product_id=product_id,
            )  # fmt: skip
    if risk.daily_loss_limit_pct > risk.max_drawdown_pct:
        yield warning_at(
            "caps_that_never_bind", POLICY, "risk.daily_loss_limit_pct",
            f"daily loss limit {risk.daily_loss_limit_pct}% is above the max drawdown "
            f"{risk.max_drawdown_pct}%, so the drawdown guard always trips first",
            "make daily_loss_limit_pct at most max_drawdown_pct",
            daily_loss_limit_pct=risk.daily_loss_limit_pct,
            max_drawdown_pct=risk.max_drawdown_pct,
        )  # fmt: skip
