"""Matching orders against a level-2 book and trade prints, the way Coinbase fills them."""

from shared.matching.engine import DoneReason, MatchingEngine
from shared.matching.types import (
    FeeRates,
    Fill,
    Liquidity,
    Order,
    OrderKind,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    ProductRules,
)
from shared.matching.walk import walk_book

__all__ = [
    "DoneReason",
    "FeeRates",
    "Fill",
    "Liquidity",
    "MatchingEngine",
    "Order",
    "OrderKind",
    "OrderRejected",
    "OrderRequest",
    "OrderStatus",
    "ProductRules",
    "walk_book",
]
