"""A consumer rides out Redis restarts: it reconnects with backoff and loses nothing."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from deploy.local.servers import HarnessError, RedisServer, redis_binary
from shared.bus import ENVELOPE_FIELD, BusKeys, Delivery, Publisher, create_redis
from shared.clock import LiveClock
from shared.messages import Envelope, Payload, new_envelope
from tests.integration.bus_helpers import consuming, fast_settings, pending_count
from tests.support.polling import eventually, metric
from tests.support.samples import tick

STREAM = "md.ticks"
CLOCK = LiveClock()


def _own_server(appendonly: bool) -> Iterator[RedisServer]:
    try:
        server = RedisServer(redis_binary(), appendonly=appendonly).start()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    yield from _own_server(appendonly=True)


@pytest.fixture
def volatile_redis() -> Iterator[RedisServer]:
    yield from _own_server(appendonly=False)


@pytest.fixture
async def client_for():  # type: ignore[no-untyped-def]
    clients = []

    def make(server: RedisServer):  # type: ignore[no-untyped-def]
        client = create_redis(server.url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def _publish(publisher: Publisher, count: int, offset: int) -> list[str]:
    ids = []
    for i in range(offset, offset + count):
        envelope = new_envelope(tick(bid=f"{100 + i}", ask=f"{101 + i}"), CLOCK)
        await publisher.publish(envelope)
        ids.append(envelope.id)
    return ids


async def test_a_consumer_resumes_from_its_group_position_after_redis_restarts(
    durable_redis: RedisServer, client_for
) -> None:
    redis, keys = client_for(durable_redis), BusKeys("restart:")
    publisher = Publisher(redis, keys=keys)
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)  # may run twice for the entry in flight at the crash
        delivery.publish(envelope, stream="test.out")  # committed exactly once

    errors_before = metric("bus_redis_errors_total", stream=STREAM, group="g")
    async with consuming(redis, keys, fast_settings(STREAM), handle) as (consumer, _task):
        sent = await _publish(publisher, 20, 0)
        await eventually(lambda: len(set(handled)) == 20, what="first 20")
        durable_redis.kill()
        await eventually(lambda: not consumer.connected, what="the consumer to notice")
        durable_redis.start()  # same port, same append-only file
        sent += await _publish(publisher, 20, 20)
        await eventually(lambda: len(set(handled)) == 40, what="20 more after the restart")
        await eventually(lambda: consumer.connected, what="reconnected")
        await eventually(lambda: _none_pending(redis, keys), what="every entry acked")
    assert list(dict.fromkeys(handled)) == sent  # in order, nothing lost
    outputs = await redis.xrange(keys.stream("test.out"))
    assert sorted(_envelope_id(fields) for _id, fields in outputs) == sorted(sent)
    assert metric("bus_redis_errors_total", stream=STREAM, group="g") > errors_before


def _envelope_id(fields: dict[bytes, bytes]) -> str:
    return str(orjson.loads(fields[ENVELOPE_FIELD.encode()])["id"])


async def _none_pending(redis, keys) -> bool:  # type: ignore[no-untyped-def]
    return await pending_count(redis, keys, STREAM) == 0


async def test_a_consumer_recreates_its_group_when_redis_comes_back_empty(
    volatile_redis: RedisServer, client_for
) -> None:
    redis, keys = client_for(volatile_redis), BusKeys("empty:")
    publisher = Publisher(redis, keys=keys)
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)

    async with consuming(redis, keys, fast_settings(STREAM), handle) as (consumer, _task):
        await _publish(publisher, 5, 0)
        await eventually(lambda: len(handled) == 5, what="first 5")
        volatile_redis.kill()
        await eventually(lambda: not consumer.connected, what="the consumer to notice")
        volatile_redis.start()  # no persistence: stream and group are gone
        after = await _publish(publisher, 5, 5)
        await eventually(lambda: handled[5:] == after, what="the 5 published after")
