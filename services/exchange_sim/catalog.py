"""The products exchange-sim lists: Coinbase's increments and limits, and how each trades.

Increments and size limits follow what Coinbase listed for these USD pairs; start prices,
volatilities and depth are round, plausible figures, not market data. A replayed
history sets the price path instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.exchange_sim.market import MarketProfile
from shared.matching.types import ProductRules

__all__ = ["CATALOG", "ListedProduct", "listed"]

D = Decimal


@dataclass(frozen=True)
class ListedProduct:
    rules: ProductRules
    profile: MarketProfile
    base_name: str
    status: str = "online"
    trading_disabled: bool = False
    cancel_only: bool = False
    limit_only: bool = False
    post_only: bool = False

    @property
    def product_id(self) -> str:
        return self.rules.product_id


def _product(
    product_id: str,
    base_name: str,
    *,
    base_increment: str,
    price_increment: str,
    base_max: str,
    start_price: str,
    volatility: float,
    spread_bps: float,
    level_notional: str,
) -> ListedProduct:
    rules = ProductRules(
        product_id=product_id,
        base_increment=D(base_increment),
        quote_increment=D(price_increment),
        price_increment=D(price_increment),
        base_min_size=D(base_increment),
        base_max_size=D(base_max),
        quote_min_size=D("1"),
        quote_max_size=D("25000000"),
    )
    profile = MarketProfile(
        product_id=product_id,
        price_increment=D(price_increment),
        base_increment=D(base_increment),
        start_price=D(start_price),
        annual_volatility=volatility,
        spread_bps=spread_bps,
        level_notional=D(level_notional),
    )
    return ListedProduct(rules=rules, profile=profile, base_name=base_name)


CATALOG: dict[str, ListedProduct] = {
    p.product_id: p
    for p in (
        _product("BTC-USD", "Bitcoin", base_increment="0.00000001", price_increment="0.01",
                 base_max="3400", start_price="90000", volatility=0.5, spread_bps=0.5,
                 level_notional="60000"),
        _product("ETH-USD", "Ethereum", base_increment="0.00000001", price_increment="0.01",
                 base_max="45000", start_price="3000", volatility=0.65, spread_bps=1.0,
                 level_notional="40000"),
        _product("SOL-USD", "Solana", base_increment="0.00000001", price_increment="0.01",
                 base_max="100000", start_price="140", volatility=0.85, spread_bps=2.0,
                 level_notional="25000"),
        _product("AVAX-USD", "Avalanche", base_increment="0.00000001", price_increment="0.01",
                 base_max="130000", start_price="25", volatility=0.95, spread_bps=5.0,
                 level_notional="8000"),
        _product("ADA-USD", "Cardano", base_increment="0.00000001", price_increment="0.0001",
                 base_max="5000000", start_price="0.70", volatility=0.9, spread_bps=4.0,
                 level_notional="8000"),
        _product("XRP-USD", "XRP", base_increment="0.000001", price_increment="0.0001",
                 base_max="5000000", start_price="2.20", volatility=0.9, spread_bps=3.0,
                 level_notional="15000"),
        _product("LTC-USD", "Litecoin", base_increment="0.00000001", price_increment="0.01",
                 base_max="25000", start_price="90", volatility=0.8, spread_bps=5.0,
                 level_notional="6000"),
        _product("LINK-USD", "Chainlink", base_increment="0.01", price_increment="0.001",
                 base_max="250000", start_price="14", volatility=0.95, spread_bps=5.0,
                 level_notional="6000"),
        _product("UNI-USD", "Uniswap", base_increment="0.000001", price_increment="0.001",
                 base_max="300000", start_price="8", volatility=1.0, spread_bps=10.0,
                 level_notional="3000"),
    )
}  # fmt: skip


def listed(product_ids: list[str] | None) -> dict[str, ListedProduct]:
    """The chosen products (all when ``None``); an unknown id is an error naming the known."""
    if not product_ids:
        return dict(CATALOG)
    unknown = [p for p in product_ids if p not in CATALOG]
    if unknown:
        raise ValueError(f"unknown products {unknown}; exchange-sim lists {sorted(CATALOG)}")
    return {p: CATALOG[p] for p in product_ids}
