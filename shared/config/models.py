"""Typed models of the files in config/: policy, universe, rate limits, strategies.

Schema rules live here (types, ranges, enums, unknown keys); rules that relate one value
to another live in :mod:`shared.config.checks`, where each has a name, a formula and a
reason, so the validator can report all of them at once.
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "AppConfig",
    "BreakoutParams",
    "ChannelBudget",
    "ExecutionPolicy",
    "EmaCrossParams",
    "LiquidityTier",
    "MeanReversionParams",
    "PolicyConfig",
    "ProductEntry",
    "RateLimitsConfig",
    "RiskPolicy",
    "StrategiesConfig",
    "StrategyConfig",
    "StrategyKind",
    "TierSlippage",
    "UniverseConfig",
]


def _config_decimal(value: Any) -> Any:
    # YAML gives 2.5 as a float; its shortest repr is what the operator wrote.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


Num = Annotated[Decimal, BeforeValidator(_config_decimal), Field(allow_inf_nan=False)]
Pct = Annotated[Num, Field(ge=0, le=100)]
PositivePct = Annotated[Num, Field(gt=0, le=100)]
Usd = Annotated[Num, Field(ge=0)]
PositiveUsd = Annotated[Num, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
ProductId = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}-[A-Z]{2,5}$")]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# --- policy.yaml -----------------------------------------------------------------------


class RiskPolicy(_Strict):
    theme_caps_pct: dict[Name, Pct] = Field(min_length=1)
    asset_caps_pct: dict[ProductId, Pct] = Field(default_factory=dict)
    default_asset_cap_pct: Pct = Decimal("10")
    stop_loss_pct: PositivePct = Decimal("3")
    take_profit_pct: Annotated[Num, Field(gt=0, le=1000)] = Decimal("6")
    max_open_trades: int = Field(default=5, ge=1, le=500)
    max_trades_per_hour: int = Field(default=6, ge=1)
    max_trades_per_day: int = Field(default=40, ge=1)
    hourly_budget_usd: PositiveUsd = Decimal("1000")
    daily_budget_usd: PositiveUsd = Decimal("5000")
    new_trade_cooldown_s: int = Field(default=300, ge=0)
    open_trades_lookback_s: int = Field(default=3600, gt=0)
    dust_threshold_usd: Usd = Decimal("1")
    min_trade_usd: PositiveUsd = Decimal("10")
    daily_loss_limit_pct: PositivePct = Decimal("3")
    max_drawdown_pct: PositivePct = Decimal("10")

    def asset_cap_pct(self, product_id: str) -> Decimal:
        """The cap that applies to ``product_id``: its own, else the default."""
        return self.asset_caps_pct.get(product_id, self.default_asset_cap_pct)


class ExecutionPolicy(_Strict):
    maker_wait_ttl_s: Seconds = 20.0
    pending_ttl_s: Seconds = 60.0
    stale_ttl_s: Seconds = 300.0
    after_maker_wait: Literal["taker", "repost"] = "taker"
    max_reposts: int = Field(default=2, ge=0, le=100)
    maker_fee_bps: Annotated[Num, Field(ge=0)] = Decimal("60")
    taker_fee_bps: Annotated[Num, Field(ge=0)] = Decimal("120")


class PolicyConfig(_Strict):
    risk: RiskPolicy
    execution: ExecutionPolicy = ExecutionPolicy()


# --- universe.yaml ---------------------------------------------------------------------


class LiquidityTier(IntEnum):
    DEEP = 1
    MEDIUM = 2
    THIN = 3


class TierSlippage(_Strict):
    base_slippage_bps: Annotated[Num, Field(ge=0, le=1000)]
    # None: the cost model's default for the tier (shared.slippage.DEFAULT_TIERS).
    impact_coefficient_bps: Annotated[Num, Field(ge=0, le=1000)] | None = None
    typical_notional_usd: Annotated[Num, Field(gt=0)] | None = None


class ProductEntry(_Strict):
    product_id: ProductId
    theme: Name
    tier: LiquidityTier
    enabled: bool = True


class UniverseConfig(_Strict):
    tiers: dict[LiquidityTier, TierSlippage]
    products: list[ProductEntry] = Field(min_length=1)

    def enabled_products(self) -> list[ProductEntry]:
        return [product for product in self.products if product.enabled]

    def product(self, product_id: str) -> ProductEntry | None:
        return next((p for p in self.products if p.product_id == product_id), None)


# --- ratelimits.yaml -------------------------------------------------------------------


class ChannelBudget(_Strict):
    rate_per_s: Annotated[Num, Field(gt=0)]
    burst: int = Field(ge=1)


class RateLimitsConfig(_Strict):
    public: ChannelBudget
    private: ChannelBudget
    websocket: ChannelBudget


# --- strategies.yaml -------------------------------------------------------------------


class StrategyKind(StrEnum):
    EMA_CROSS = "ema_cross"
    MEAN_REVERSION = "mean_reversion"
    BREAKOUT = "breakout"


class EmaCrossParams(_Strict):
    fast_period: int = Field(ge=2, le=500)
    slow_period: int = Field(ge=3, le=1000)
    atr_period: int = Field(default=14, ge=2, le=500)
    atr_stop_multiple: Annotated[Num, Field(gt=0, le=20)] = Decimal("2")
    reward_risk_ratio: Annotated[Num, Field(gt=0, le=20)] = Decimal("2")


class MeanReversionParams(_Strict):
    rsi_period: int = Field(default=14, ge=2, le=500)
    oversold: Annotated[Num, Field(gt=0, lt=100)] = Decimal("30")
    overbought: Annotated[Num, Field(gt=0, lt=100)] = Decimal("70")
    bollinger_period: int = Field(default=20, ge=2, le=500)
    bollinger_stddev: Annotated[Num, Field(gt=0, le=10)] = Decimal("2")


class BreakoutParams(_Strict):
    donchian_period: int = Field(default=20, ge=2, le=1000)
    atr_period: int = Field(default=14, ge=2, le=500)
    atr_stop_multiple: Annotated[Num, Field(gt=0, le=20)] = Decimal("2")
    reward_risk_ratio: Annotated[Num, Field(gt=0, le=20)] = Decimal("2")


class _StrategyBase(_Strict):
    name: Name
    products: list[ProductId] = Field(min_length=1)
    granularity_s: Literal[60, 300, 900, 1800, 3600, 7200, 21600, 86400] = 300
    quote_size_usd: PositiveUsd
    enabled: bool = True


class EmaCrossStrategy(_StrategyBase):
    kind: Literal[StrategyKind.EMA_CROSS]
    params: EmaCrossParams


class MeanReversionStrategy(_StrategyBase):
    kind: Literal[StrategyKind.MEAN_REVERSION]
    params: MeanReversionParams = MeanReversionParams()


class BreakoutStrategy(_StrategyBase):
    kind: Literal[StrategyKind.BREAKOUT]
    params: BreakoutParams = BreakoutParams()


StrategyConfig = Annotated[
    EmaCrossStrategy | MeanReversionStrategy | BreakoutStrategy, Field(discriminator="kind")
]


class StrategiesConfig(_Strict):
    strategies: list[StrategyConfig] = Field(default_factory=list)


# --- all of it -------------------------------------------------------------------------


class AppConfig(_Strict):
    """Every config file, parsed; what a service receives from ``load_config``."""

    policy: PolicyConfig
    universe: UniverseConfig
    ratelimits: RateLimitsConfig
    strategies: StrategiesConfig
