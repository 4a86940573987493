"""The bus against a real Redis: delivery, acks, dead letters, takeover, splitting, stop."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import orjson
from pydantic import model_validator

from shared.bus import ENVELOPE_FIELD, Delivery, Publisher, StreamConsumer
from shared.clock import LiveClock
from shared.messages import Envelope, MessageRegistry, Payload, encode, new_envelope
from tests.integration.bus_helpers import consuming, dead_letters, fast_settings, pending_count
from tests.support.polling import eventually, metric
from tests.support.samples import tick

CLOCK = LiveClock()
STREAM = "md.ticks"


def _ticks(count: int) -> list[Envelope[Payload]]:
    return [
        new_envelope(tick(bid=f"{100 + i}.00", ask=f"{100 + i}.01"), CLOCK) for i in range(count)
    ]


async def test_every_message_is_handled_once_in_order_and_acked(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    seen: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        assert delivery.attempt == 1
        seen.append(envelope.id)

    sent = _ticks(50)
    handled_before = metric("bus_handled_total", stream=STREAM, group="g")
    async with consuming(redis, bus_keys, fast_settings(STREAM), handle):
        for envelope in sent:
            await publisher.publish(envelope)
        await eventually(lambda: len(seen) == 50, what="all 50 handled")
        await eventually(lambda: _pending_is(redis, bus_keys, 0), what="all 50 acked")
    assert seen == [envelope.id for envelope in sent]
    assert metric("bus_handled_total", stream=STREAM, group="g") - handled_before == 50


async def test_poison_entries_are_dead_lettered_with_reasons_and_the_consumer_goes_on(
    redis, bus_keys
):
    stream_key = bus_keys.stream(STREAM)
    good = new_envelope(tick(), CLOCK)
    document = orjson.loads(encode(good))
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)

    poison = [
        {ENVELOPE_FIELD: b"{not json"},
        {"something": b"else"},
        {ENVELOPE_FIELD: orjson.dumps({**document, "type": "Teleported"})},
        {ENVELOPE_FIELD: orjson.dumps({**document, "v": 99})},
        {ENVELOPE_FIELD: orjson.dumps({**document, "data": {"product_id": "BTC-USD"}})},
    ]
    for fields in poison:
        await redis.xadd(stream_key, fields)
    await Publisher(redis, keys=bus_keys).publish(good)

    async with consuming(redis, bus_keys, fast_settings(STREAM), handle):
        await eventually(lambda: handled == [good.id], what="the good message after the poison")
        letters = await eventually(
            lambda: _when_len(dead_letters(redis, bus_keys, STREAM), 5), what="5 dead letters"
        )
    reasons = [letter["error"] for letter in letters]
    assert "not JSON" in reasons[0]
    assert "no 'env' field" in reasons[1]
    assert "unknown message type 'Teleported'" in reasons[2]
    assert "newer than the supported v1" in reasons[3]
    assert "fails its schema" in reasons[4] and "best_bid" in reasons[4]
    assert all(letter["reason"] == "malformed" for letter in letters)
    assert letters[1]["something"] == "else"  # the original fields travel with the letter
    await eventually(lambda: _pending_is(redis, bus_keys, 0), what="everything acked")


async def _when_len(coroutine, length):  # type: ignore[no-untyped-def]
    result = await coroutine
    return result if len(result) == length else None


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(redis, bus_keys):
    attempts: list[int] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        raise ValueError(f"cannot price {envelope.data.product_id}")  # type: ignore[attr-defined]

    failed_before = metric("bus_failed_total", stream=STREAM, group="g")
    async with consuming(redis, bus_keys, fast_settings(STREAM, max_deliveries=3), handle):
        await Publisher(redis, keys=bus_keys).publish(new_envelope(tick(), CLOCK))
        (letter,) = await eventually(
            lambda: _when_len(dead_letters(redis, bus_keys, STREAM), 1), what="a dead letter"
        )
    assert attempts == [1, 2, 3]
    assert letter["reason"] == "handler_failed"
    assert letter["error"] == "ValueError: cannot price BTC-USD"
    assert letter["attempts"] == "3"
    assert metric("bus_failed_total", stream=STREAM, group="g") - failed_before == 3
    assert await pending_count(redis, bus_keys, STREAM) == 0
    assert not await redis.exists(bus_keys.errors(STREAM, "g"))


async def test_a_transient_failure_is_retried_and_the_effect_happens_once(redis, bus_keys):
    out = "test.out"
    publisher = Publisher(redis, keys=bus_keys)
    calls: list[int] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        calls.append(delivery.attempt)
        delivery.publish(envelope, stream=out)
        if delivery.attempt == 1:
            raise ConnectionResetError("venue hiccup")  # the queued effect must not commit

    async with consuming(redis, bus_keys, fast_settings(STREAM), handle):
        await publisher.publish(new_envelope(tick(), CLOCK))
        await eventually(lambda: calls == [1, 2], what="a retry")
        await eventually(lambda: _pending_is(redis, bus_keys, 0), what="the ack")
    assert await redis.xlen(bus_keys.stream(out)) == 1
    assert await dead_letters(redis, bus_keys, STREAM) == []


async def _pending_is(redis, keys, count):  # type: ignore[no-untyped-def]
    return await pending_count(redis, keys, STREAM) == count


async def test_a_consumer_killed_mid_handling_is_taken_over_and_effects_happen_once(
    redis, bus_keys
):
    out = "test.out"
    publisher = Publisher(redis, keys=bus_keys)
    sent = _ticks(10)
    victim_has_it = asyncio.Event()
    handled_by: dict[str, list[str]] = {}

    def handler(name: str, hang: bool):  # type: ignore[no-untyped-def]
        async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
            handled_by.setdefault(envelope.id, []).append(name)
            delivery.publish(envelope, stream=out)
            if hang:
                victim_has_it.set()
                await asyncio.Event().wait()  # dies here: effects queued, nothing committed

        return handle

    victim = StreamConsumer(
        redis, fast_settings(STREAM, "victim", batch_size=1), handler("victim", True), keys=bus_keys
    )
    victim_task = asyncio.create_task(victim.run())
    for envelope in sent:
        await publisher.publish(envelope)
    await asyncio.wait_for(victim_has_it.wait(), 5)
    victim_task.cancel()  # the process dies between handling and ack

    survivor = fast_settings(STREAM, "survivor", claim_min_idle_ms=100)
    async with consuming(redis, bus_keys, survivor, handler("survivor", False)):
        await eventually(lambda: _pending_is(redis, bus_keys, 0), what="everything acked")
    outputs = await redis.xrange(bus_keys.stream(out))
    out_ids = [orjson.loads(fields[ENVELOPE_FIELD.encode()])["id"] for _id, fields in outputs]
    assert sorted(out_ids) == sorted(envelope.id for envelope in sent)  # each exactly once
    assert handled_by[sent[0].id] == ["victim", "survivor"]


async def test_a_slow_handler_overtaken_by_a_claim_commits_nothing(redis, bus_keys):
    out = "test.out"
    publisher = Publisher(redis, keys=bus_keys)
    release_slow = asyncio.Event()
    slow_started = asyncio.Event()

    async def slow(envelope: Envelope[Payload], delivery: Delivery) -> None:
        delivery.publish(envelope, stream=out)
        slow_started.set()
        await release_slow.wait()

    async def fast(envelope: Envelope[Payload], delivery: Delivery) -> None:
        delivery.publish(envelope, stream=out)

    duplicates_before = metric("bus_duplicates_total", stream=STREAM, group="g")
    async with consuming(redis, bus_keys, fast_settings(STREAM, "slow"), slow):
        await publisher.publish(new_envelope(tick(), CLOCK))
        await asyncio.wait_for(slow_started.wait(), 5)
        overtaker = fast_settings(STREAM, "fast", claim_min_idle_ms=100)
        async with consuming(redis, bus_keys, overtaker, fast):
            await eventually(lambda: _xlen_is(redis, bus_keys.stream(out), 1), what="fast commit")
            release_slow.set()
            await eventually(
                lambda: (
                    metric("bus_duplicates_total", stream=STREAM, group="g") > duplicates_before
                ),
                what="the slow commit to be refused",
            )
    assert await redis.xlen(bus_keys.stream(out)) == 1
    assert await pending_count(redis, bus_keys, STREAM) == 0


async def _xlen_is(redis, key, length):  # type: ignore[no-untyped-def]
    return await redis.xlen(key) == length


async def test_two_consumers_in_one_group_split_the_stream_without_duplicates(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def handler(name: str):  # type: ignore[no-untyped-def]
        async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
            seen[name].append(envelope.id)
            await asyncio.sleep(0)  # let the other consumer run

        return handle

    sent = _ticks(300)
    async with (
        consuming(redis, bus_keys, fast_settings(STREAM, "a", batch_size=5), handler("a")),
        consuming(redis, bus_keys, fast_settings(STREAM, "b", batch_size=5), handler("b")),
    ):
        for envelope in sent:
            await publisher.publish(envelope)
        await eventually(lambda: len(seen["a"]) + len(seen["b"]) >= 300, what="all handled")
    everything = seen["a"] + seen["b"]
    assert len(everything) == 300 and set(everything) == {envelope.id for envelope in sent}
    assert seen["a"] and seen["b"], "both consumers should have taken a share"


async def test_stop_finishes_the_message_in_hand_then_exits(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    in_hand = asyncio.Event()
    may_finish = asyncio.Event()
    finished: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        in_hand.set()
        await may_finish.wait()
        finished.append(envelope.id)

    sent = _ticks(3)
    for envelope in sent:  # all three arrive in the consumer's first batch
        await publisher.publish(envelope)
    consumer = StreamConsumer(redis, fast_settings(STREAM, batch_size=10), handle, keys=bus_keys)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(in_hand.wait(), 5)
    consumer.stop()
    may_finish.set()
    await asyncio.wait_for(task, 5)
    assert finished == [sent[0].id]
    summary = await redis.xpending(bus_keys.stream(STREAM), "g")
    assert summary["pending"] == 2  # delivered but not started: handled after a restart

    restarted = StreamConsumer(redis, fast_settings(STREAM), handle, keys=bus_keys)
    restart_task = asyncio.create_task(restarted.run())
    await eventually(lambda: len(finished) == 3, what="the rest after restart")
    restarted.stop()
    await asyncio.wait_for(restart_task, 5)
    assert finished == [envelope.id for envelope in sent]


async def test_the_same_envelope_twice_in_one_batch_is_handled_once(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)

    envelope = new_envelope(tick(), CLOCK, message_id="derived-from-input-42")
    async with consuming(redis, bus_keys, fast_settings(STREAM), handle):
        await publisher.publish(envelope)
        await publisher.publish(envelope)  # a producer redoing its work after a crash
        await eventually(lambda: _pending_is_zero_after(redis, bus_keys, 2), what="both acked")
    assert handled == [envelope.id]


async def _pending_is_zero_after(redis, keys, delivered):  # type: ignore[no-untyped-def]
    groups = await redis.xinfo_groups(keys.stream(STREAM))
    return groups and groups[0]["entries-read"] == delivered and groups[0]["pending"] == 0


async def test_streams_are_trimmed_to_about_maxlen(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys, maxlen=100)
    for envelope in _ticks(1000):
        await publisher.publish(envelope)
    length = await redis.xlen(bus_keys.stream(STREAM))
    assert 100 <= length < 300  # approximate trimming works in whole radix-tree nodes


async def test_lag_and_pending_are_exported(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    for envelope in _ticks(7):
        await publisher.publish(envelope)
    gate = asyncio.Event()

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        await gate.wait()

    settings = fast_settings(STREAM, batch_size=1, claim_interval_s=0.05)
    async with consuming(redis, bus_keys, settings, handle):
        await eventually(
            lambda: metric("bus_consumer_lag", stream=STREAM, group="g") == 6,
            what="lag of 6 behind the one in hand",
        )
        assert metric("bus_consumer_pending", stream=STREAM, group="g") == 1
        gate.set()


async def test_an_entry_that_breaks_decoding_unexpectedly_does_not_hold_up_its_batch(
    redis, bus_keys
):
    document = orjson.loads(encode(new_envelope(tick(), CLOCK)))
    document["data"]["exchange_time"] = "9999-12-31T23:59:59-01:00"  # overflows in UTC
    good = _ticks(5)
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)

    publisher = Publisher(redis, keys=bus_keys)
    for envelope in good[:2]:
        await publisher.publish(envelope)
    await redis.xadd(bus_keys.stream(STREAM), {ENVELOPE_FIELD: orjson.dumps(document)})
    for envelope in good[2:]:
        await publisher.publish(envelope)
    async with consuming(redis, bus_keys, fast_settings(STREAM, batch_size=16), handle):
        await eventually(lambda: len(handled) == 5, what="the five good entries")
        (letter,) = await eventually(
            lambda: _when_len(dead_letters(redis, bus_keys, STREAM), 1), what="one dead letter"
        )
        await eventually(lambda: _pending_is(redis, bus_keys, 0), what="everything acked")
    assert handled == [envelope.id for envelope in good]
    assert letter["reason"] == "malformed" and "out of range" in letter["error"]


async def test_an_entry_whose_consumers_keep_dying_is_dead_lettered_after_max_deliveries(
    redis, bus_keys
):
    await Publisher(redis, keys=bus_keys).publish(new_envelope(tick(), CLOCK))
    for life in range(3):  # max_deliveries is 3: three consumers die handling it
        entered = asyncio.Event()

        async def die(
            envelope: Envelope[Payload], delivery: Delivery, entered: asyncio.Event = entered
        ) -> None:
            entered.set()
            await asyncio.Event().wait()

        settings = fast_settings(STREAM, f"doomed-{life}", claim_min_idle_ms=100)
        task = asyncio.create_task(StreamConsumer(redis, settings, die, keys=bus_keys).run())
        await asyncio.wait_for(entered.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    called: list[str] = []

    async def never(envelope: Envelope[Payload], delivery: Delivery) -> None:
        called.append(envelope.id)

    survivor = fast_settings(STREAM, "survivor", claim_min_idle_ms=100)
    async with consuming(redis, bus_keys, survivor, never):
        (letter,) = await eventually(
            lambda: _when_len(dead_letters(redis, bus_keys, STREAM), 1), what="a dead letter"
        )
    assert called == []
    assert letter["reason"] == "max_deliveries" and letter["attempts"] == "4"
    assert letter["error"] == "consumer died while handling it"


async def test_a_duplicate_in_a_later_batch_is_skipped_without_calling_the_handler(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)

    envelope = new_envelope(tick(), CLOCK, message_id="derived-from-input-7")
    async with consuming(redis, bus_keys, fast_settings(STREAM, batch_size=1), handle):
        await publisher.publish(envelope)
        await eventually(lambda: _pending_is_zero_after(redis, bus_keys, 1), what="first acked")
        duplicates_before = metric("bus_duplicates_total", stream=STREAM, group="g")
        await publisher.publish(envelope)
        await eventually(lambda: _pending_is_zero_after(redis, bus_keys, 2), what="second acked")
    assert handled == [envelope.id]
    assert metric("bus_duplicates_total", stream=STREAM, group="g") == duplicates_before + 1


async def test_without_the_marker_lookup_a_duplicate_runs_again_and_publishes_nothing(
    redis, bus_keys
):
    out = "test.out"
    publisher = Publisher(redis, keys=bus_keys)
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.id)
        delivery.publish(envelope, stream=out)

    envelope = new_envelope(tick(), CLOCK, message_id="derived-from-input-8")
    settings = fast_settings(STREAM, batch_size=1, check_handled_first=False)
    async with consuming(redis, bus_keys, settings, handle):
        await publisher.publish(envelope)
        await eventually(lambda: _pending_is_zero_after(redis, bus_keys, 1), what="first acked")
        duplicates_before = metric("bus_duplicates_total", stream=STREAM, group="g")
        await publisher.publish(envelope)
        await eventually(lambda: _pending_is_zero_after(redis, bus_keys, 2), what="second acked")
    assert handled == [envelope.id, envelope.id]  # no lookup: the handler ran again
    assert await redis.xlen(bus_keys.stream(out)) == 1  # and the commit refused its output
    assert metric("bus_duplicates_total", stream=STREAM, group="g") == duplicates_before + 1


async def test_entries_trimmed_while_pending_are_counted_and_acked_on_restart(redis, bus_keys):
    publisher = Publisher(redis, keys=bus_keys)
    for envelope in _ticks(3):
        await publisher.publish(envelope)
    entered = asyncio.Event()

    async def hang(envelope: Envelope[Payload], delivery: Delivery) -> None:
        entered.set()
        await asyncio.Event().wait()

    settings = fast_settings(STREAM, "c1", batch_size=10)
    task = asyncio.create_task(StreamConsumer(redis, settings, hang, keys=bus_keys).run())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await redis.xtrim(bus_keys.stream(STREAM), maxlen=0, approximate=False)

    trimmed_before = metric("bus_dead_lettered_total", stream=STREAM, group="g", reason="trimmed")

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        raise AssertionError("nothing is left to handle")

    async with consuming(redis, bus_keys, settings, handle):
        await eventually(lambda: _pending_is(redis, bus_keys, 0), what="trimmed entries acked")
    trimmed = metric("bus_dead_lettered_total", stream=STREAM, group="g", reason="trimmed")
    assert trimmed - trimmed_before == 3


class _Exploding(Payload):
    """A payload whose validation fails with something other than a ValueError."""

    TYPE: ClassVar[str] = "Exploding"
    VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = STREAM

    product_id: str

    @model_validator(mode="after")
    def _explode(self) -> _Exploding:
        if self.product_id == "BOOM-USD":
            raise RuntimeError("validator bug")
        return self


async def test_any_decoding_failure_dead_letters_only_that_entry(redis, bus_keys):
    registry = MessageRegistry([_Exploding])
    handled: list[str] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled.append(envelope.data.product_id)  # type: ignore[attr-defined]

    publisher = Publisher(redis, keys=bus_keys)
    for product_id in ("A-USD", "BOOM-USD", "B-USD"):
        await publisher.publish(new_envelope(_Exploding(product_id="A-USD"), CLOCK).model_copy(
            update={"data": _Exploding.model_construct(product_id=product_id)}
        ))  # fmt: skip
    consumer = StreamConsumer(redis, fast_settings(STREAM), handle, keys=bus_keys,
                              registry=registry)  # fmt: skip
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: handled == ["A-USD", "B-USD"], what="both good entries")
        (letter,) = await eventually(
            lambda: _when_len(dead_letters(redis, bus_keys, STREAM), 1), what="a dead letter"
        )
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
    assert letter["reason"] == "malformed" and letter["error"] == "RuntimeError: validator bug"


async def test_entries_that_publish_nothing_are_acked_marked_and_cleared_with_the_next_read(
    redis, bus_keys
):
    # block_ms long: the acks must not wait for the blocking read to return
    settings = fast_settings(STREAM, block_ms=3000, claim_interval_s=30)
    publisher = Publisher(redis, keys=bus_keys)
    calls: list[int] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        calls.append(delivery.attempt)
        if len(calls) == 1:
            raise ConnectionResetError("once")  # recorded, then retried by a claim

    sent = _ticks(1)[0]
    errors_key = bus_keys.errors(STREAM, "g")
    async with consuming(redis, bus_keys, settings, handle) as (consumer, _task):
        await publisher.publish(sent)
        # the group exists once the handler ran (polled before, XPENDING finds no group)
        await eventually(lambda: calls == [1], what="the first delivery")
        await eventually(lambda: _pending_is(redis, bus_keys, 1), what="the failed delivery")
        assert await redis.hlen(errors_key) == 1
        # claimed once idle claim_min_idle_ms (the consumer's own claims wait 30 s)
        assert await eventually(consumer.claim_abandoned, what="the failed entry claimed") == 1
        assert calls == [1, 2]
        assert await pending_count(redis, bus_keys, STREAM) == 0
        assert await redis.hlen(errors_key) == 0
        assert await redis.exists(bus_keys.handled(STREAM, "g", sent.id))

        more = _ticks(5)
        for envelope in more:
            await publisher.publish(envelope)
        await eventually(lambda: len(calls) == 7, what="five more handled")
        # acked while the consumer is still blocked in its next read
        await eventually(
            lambda: _pending_is(redis, bus_keys, 0), within=1.5, what="acked with the read"
        )
        for envelope in more:
            assert await redis.exists(bus_keys.handled(STREAM, "g", envelope.id))


async def test_an_at_most_once_consumer_keeps_nothing_pending_and_never_retries(redis, bus_keys):
    settings = fast_settings(STREAM, handled_ttl_s=None, at_most_once=True)
    publisher = Publisher(redis, keys=bus_keys)
    calls: list[str] = []
    in_hand, release = asyncio.Event(), asyncio.Event()

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        calls.append(envelope.data.product_id)  # type: ignore[attr-defined]
        if envelope.data.product_id == "FAIL-USD":  # type: ignore[attr-defined]
            raise ValueError("cannot price FAIL-USD")
        if envelope.data.product_id == "HOLD-USD":  # type: ignore[attr-defined]
            in_hand.set()
            await release.wait()

    consumer = StreamConsumer(redis, settings, handle, keys=bus_keys)
    task = asyncio.create_task(consumer.run())
    for product_id in ("BTC-USD", "FAIL-USD", "ETH-USD"):
        await publisher.publish(new_envelope(tick(product_id=product_id), CLOCK))
    (letter,) = await eventually(
        lambda: _when_len(dead_letters(redis, bus_keys, STREAM), 1), what="a dead letter"
    )
    await eventually(lambda: len(calls) == 3, what="the entry after the failed one")
    # nothing pending, so nothing for a claim to retry
    assert await pending_count(redis, bus_keys, STREAM) == 0
    assert await consumer.claim_abandoned() == 0
    assert calls == ["BTC-USD", "FAIL-USD", "ETH-USD"]
    assert (letter["reason"], letter["attempts"]) == ("handler_failed", "1")
    assert letter["error"] == "ValueError: cannot price FAIL-USD"
    # an entry in hand is not pending: the consumer dies with it, and it is gone
    await publisher.publish(new_envelope(tick(product_id="HOLD-USD"), CLOCK))
    await asyncio.wait_for(in_hand.wait(), timeout=5)
    assert await pending_count(redis, bus_keys, STREAM) == 0
    task.cancel()  # dies in the handler
    await asyncio.gather(task, return_exceptions=True)
    async with consuming(redis, bus_keys, settings, handle):
        await publisher.publish(new_envelope(tick(product_id="SOL-USD"), CLOCK))
        # its own pending entries are handled on start, before anything new
        await eventually(lambda: calls[-1] == "SOL-USD", what="the next tick")
    assert calls == ["BTC-USD", "FAIL-USD", "ETH-USD", "HOLD-USD", "SOL-USD"]
    assert not await redis.exists(bus_keys.errors(STREAM, "g"))


async def test_a_read_interval_takes_a_busy_stream_in_batches(redis, bus_keys):
    # after a read that did not fill its batch the next waits out the interval; a full
    # batch means more is waiting, so the next read follows at once
    settings = fast_settings(STREAM, batch_size=5, read_interval_ms=500)
    publisher = Publisher(redis, keys=bus_keys)
    handled_at: list[float] = []

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> None:
        handled_at.append(time.monotonic())

    async with consuming(redis, bus_keys, settings, handle):
        await publisher.publish(_ticks(1)[0])
        await eventually(lambda: len(handled_at) == 1, what="the first tick")
        for envelope in _ticks(12):
            await publisher.publish(envelope)
        await eventually(lambda: len(handled_at) == 13, what="the next twelve")
    first, burst = handled_at[0], handled_at[1:]
    # the read that took the first tick began at most block_ms before it was handled
    assert burst[0] - first >= 0.5 - 0.05 - 0.05
    # 5 + 5 + 2: three reads back to back, not three intervals
    assert burst[-1] - burst[0] < 0.25
