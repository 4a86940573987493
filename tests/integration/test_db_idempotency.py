"""Postgres effects of a redelivered message happen once: claim_message in the same transaction."""

from __future__ import annotations

import asyncio

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from shared.bus import Delivery, Publisher, StreamConsumer
from shared.clock import LiveClock
from shared.db import claim_message, upgrade
from shared.messages import Envelope, Payload, new_envelope
from tests.integration.bus_helpers import consuming, fast_settings, pending_count
from tests.support.polling import eventually
from tests.support.samples import tick

STREAM = "md.ticks"
CLOCK = LiveClock()
EFFECTS = MetaData()
recorded = Table(
    "recorded_ticks",
    EFFECTS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(128), nullable=False),
    Column("handled_by", String(64), nullable=False),
)


async def _create_tables(engine, url: str) -> None:  # type: ignore[no-untyped-def]
    await asyncio.to_thread(upgrade, url)
    async with engine.begin() as connection:
        await connection.run_sync(EFFECTS.create_all)


async def test_claim_message_is_first_come_and_released_by_a_rollback(pg_engine, pg_url):
    await _create_tables(pg_engine, pg_url)
    async with pg_engine.begin() as connection:
        assert await claim_message(connection, "risk", "m-1") is True
        assert await claim_message(connection, "risk", "m-1") is False
        assert await claim_message(connection, "execution", "m-1") is True

    class Boom(Exception):
        pass

    try:
        async with pg_engine.begin() as connection:
            assert await claim_message(connection, "risk", "m-2") is True
            raise Boom
    except Boom:
        pass
    async with pg_engine.begin() as connection:
        assert await claim_message(connection, "risk", "m-2") is True  # the rollback freed it


async def test_a_consumer_killed_after_commit_before_ack_does_not_write_twice(
    redis, bus_keys, pg_engine, pg_url
):
    await _create_tables(pg_engine, pg_url)
    publisher = Publisher(redis, keys=bus_keys)
    victim_committed = asyncio.Event()

    def handler(name: str, die_after_commit: bool):  # type: ignore[no-untyped-def]
        async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
            async with pg_engine.begin() as connection:
                if await claim_message(connection, delivery.stream, envelope.id):
                    await connection.execute(
                        insert(recorded).values(message_id=envelope.id, handled_by=name)
                    )
            if die_after_commit:
                victim_committed.set()
                await asyncio.Event().wait()  # killed here: committed in Postgres, never acked

        return handle

    sent = [new_envelope(tick(bid=f"{100 + i}", ask=f"{101 + i}"), CLOCK) for i in range(12)]
    for envelope in sent:
        await publisher.publish(envelope)
    victim = StreamConsumer(
        redis,
        fast_settings(STREAM, "victim", batch_size=1, handled_ttl_s=None),
        handler("victim", True),
        keys=bus_keys,
    )
    victim_task = asyncio.create_task(victim.run())
    await asyncio.wait_for(victim_committed.wait(), 5)
    victim_task.cancel()

    survivor = fast_settings(STREAM, "survivor", claim_min_idle_ms=100, handled_ttl_s=None)
    async with consuming(redis, bus_keys, survivor, handler("survivor", False)):
        await eventually(lambda: _nothing_pending(redis, bus_keys), what="everything acked")

    async with pg_engine.connect() as connection:
        rows = (
            await connection.execute(select(recorded.c.message_id, recorded.c.handled_by))
        ).all()
        count = (await connection.execute(select(func.count()).select_from(recorded))).scalar()
    assert count == 12
    assert sorted(row.message_id for row in rows) == sorted(envelope.id for envelope in sent)
    assert (sent[0].id, "victim") in [(row.message_id, row.handled_by) for row in rows]


async def _nothing_pending(redis, keys) -> bool:  # type: ignore[no-untyped-def]
    return await pending_count(redis, keys, STREAM) == 0
