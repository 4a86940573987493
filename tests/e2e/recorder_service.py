"""A small service built only from the shared library, run as a real process by the e2e tier.

It records every tick from ``md.ticks`` in Postgres, exactly once. A tick for
``HOLD_PRODUCT`` is held for ``HOLD_SECONDS`` after its row is committed and before the
ack, which gives the tests a window to stop or kill the process at the worst moment.
"""

from __future__ import annotations

import asyncio

from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import BusKeys, ConsumerSettings, Delivery, StreamConsumer, create_redis
from shared.db import claim_message, make_engine, upgrade
from shared.logging import configure_logging, get_logger
from shared.messages import Envelope, Payload, TickUpdated
from shared.service import create_app, redis_ready, serve
from shared.settings import ServiceSettings, load_settings

GROUP = "recorder"
TABLES = MetaData()
recorded = Table(
    "recorded_ticks",
    TABLES,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(128), nullable=False),
    Column("product_id", String(32), nullable=False),
)
_log = get_logger("recorder")


class RecorderSettings(ServiceSettings):
    service_name: str = "recorder"
    consumer_name: str = "recorder-1"
    hold_product: str = "HOLD-USD"
    hold_seconds: float = 1.0
    probe_secret: SecretStr | None = None


def bootstrap(
    settings: RecorderSettings, redis: Redis | None = None, engine: AsyncEngine | None = None
):  # type: ignore[no-untyped-def]
    redis = redis or create_redis(settings.redis_url)
    engine = engine or make_engine(settings.database_url)

    async def record(envelope: Envelope[Payload], delivery: Delivery) -> None:
        tick = envelope.data
        if not isinstance(tick, TickUpdated):
            raise TypeError(f"unexpected {envelope.type} on {delivery.stream}")
        async with engine.begin() as connection:
            if await claim_message(connection, GROUP, envelope.id):
                await connection.execute(
                    insert(recorded).values(message_id=envelope.id, product_id=tick.product_id)
                )
        if tick.product_id == settings.hold_product:
            _log.info("holding message", message_id=envelope.id, entry_id=delivery.entry_id)
            await asyncio.sleep(settings.hold_seconds)
            _log.info("released message", message_id=envelope.id)

    consumer = StreamConsumer(
        redis,
        ConsumerSettings(
            stream="md.ticks",
            group=GROUP,
            consumer=settings.consumer_name,
            block_ms=200,
            claim_min_idle_ms=60_000,
        ),
        record,
        keys=BusKeys(settings.bus_prefix),
    )

    async def create_tables() -> None:
        # The real schema comes from the migrations, as the compose migrate step applies it.
        await asyncio.to_thread(upgrade, settings.database_url)
        async with engine.begin() as connection:
            await connection.run_sync(TABLES.create_all)

    async def postgres_ready() -> bool:
        async with engine.connect() as connection:
            return (await connection.execute(text("select 1"))).scalar() == 1

    async def close() -> None:
        await redis.aclose()
        await engine.dispose()

    _log.info("settings loaded", settings=settings.model_dump(), probe_secret=settings.probe_secret)
    return create_app(
        settings,
        workers=[consumer],
        readiness={"redis": redis_ready(redis), "postgres": postgres_ready},
        on_startup=[create_tables],
        on_shutdown=[close],
    )


def main() -> None:
    settings = load_settings(RecorderSettings)
    configure_logging(settings.service_name, settings.log_level, secrets=settings.secrets())
    serve(bootstrap(settings), settings)


if __name__ == "__main__":
    main()
