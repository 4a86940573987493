"""What the venue says about each product (increments, limits, status), cached in Redis;
and each product's latest tick.

market-data refreshes the cache from Coinbase's REST products; risk and execution read
it. ``entries_allowed`` is False for a product that is disabled, cancel-only, offline or
no longer listed: risk stops new entries on it, exits stay possible where the venue
allows them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from shared.coinbase.models import Product
from shared.logging import get_logger
from shared.matching.types import ProductRules
from shared.messages import Dec, Envelope, MessageError, TickUpdated, UtcDatetime, decode

__all__ = ["LatestTicks", "ProductCatalog", "ProductInfo"]

_log = get_logger("shared.products")


class ProductInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    product_id: str
    listed: bool = True
    base_increment: Dec
    quote_increment: Dec
    price_increment: Dec
    base_min_size: Dec
    base_max_size: Dec
    quote_min_size: Dec
    quote_max_size: Dec
    status: str
    trading_disabled: bool
    cancel_only: bool
    limit_only: bool
    post_only: bool
    entries_allowed: bool
    updated_at: UtcDatetime

    @classmethod
    def from_venue(cls, product: Product, updated_at: object) -> ProductInfo:
        return cls.model_validate(
            {
                "product_id": product.product_id,
                "base_increment": product.base_increment,
                "quote_increment": product.quote_increment,
                "price_increment": product.tick,
                "base_min_size": product.base_min_size,
                "base_max_size": product.base_max_size,
                "quote_min_size": product.quote_min_size,
                "quote_max_size": product.quote_max_size,
                "status": product.status,
                "trading_disabled": product.trading_disabled or product.is_disabled,
                "cancel_only": product.cancel_only,
                "limit_only": product.limit_only,
                "post_only": product.post_only,
                "entries_allowed": product.accepts_new_orders,
                "updated_at": updated_at,
            }
        )

    def rules(self) -> ProductRules:
        """The increments and size limits orders on this product must respect."""
        return ProductRules(
            product_id=self.product_id, base_increment=self.base_increment,
            quote_increment=self.quote_increment, price_increment=self.price_increment,
            base_min_size=self.base_min_size, base_max_size=self.base_max_size,
            quote_min_size=self.quote_min_size, quote_max_size=self.quote_max_size,
        )  # fmt: skip

    def delisted(self, updated_at: object) -> ProductInfo:
        """The same product, no longer listed by the venue."""
        return self.model_copy(
            update={"listed": False, "entries_allowed": False, "status": "delisted",
                    "updated_at": updated_at}
        )  # fmt: skip


class ProductCatalog:
    """The Redis hash ``<prefix>md:products``: product id -> :class:`ProductInfo` JSON."""

    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self._redis = redis
        self.key = f"{prefix}md:products"

    async def save(self, products: Iterable[ProductInfo]) -> None:
        mapping: dict[FieldT, EncodableT] = {
            info.product_id: info.model_dump_json() for info in products
        }
        if mapping:
            await self._redis.hset(self.key, mapping=mapping)

    async def get(self, product_id: str) -> ProductInfo | None:
        raw = await self._redis.hget(self.key, product_id)
        return None if raw is None else ProductInfo.model_validate_json(raw)

    async def all(self) -> dict[str, ProductInfo]:
        raw = await self._redis.hgetall(self.key)
        infos = (ProductInfo.model_validate_json(value) for value in raw.values())
        return {info.product_id: info for info in infos}


class LatestTicks:
    """The Redis hash ``<prefix>md:ticks:latest``: product id -> the envelope of its latest
    ``md.ticks`` entry.

    market-data writes a product's field in the same round trip as the tick's XADD. A
    service that needs a product's quote now and then (signal's reference mid, once per
    proposal) reads one field here instead of consuming 500 ticks a second.
    """

    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self._redis = redis
        self.key = f"{prefix}md:ticks:latest"

    async def get(self, product_id: str) -> Envelope[TickUpdated] | None:
        """The product's latest tick; None if there is none, or none that can be read."""
        raw = await self._redis.hget(self.key, product_id)
        if raw is None:
            return None
        try:
            envelope = decode(raw)
        except MessageError as exc:
            _log.warning("latest tick unreadable", product_id=product_id, error=str(exc))
            return None
        if not isinstance(envelope.data, TickUpdated) or envelope.data.product_id != product_id:
            _log.warning("latest tick is not this product's tick", product_id=product_id,
                         type=envelope.type)  # fmt: skip
            return None
        return envelope  # type: ignore[return-value]
