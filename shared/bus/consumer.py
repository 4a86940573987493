"""Consumer-group worker over one Redis stream: at-least-once delivery, exactly-once effects.

How a batch of entries is handled:

1. Each entry is decoded. One that is not a valid envelope goes straight to
   ``dlq.<stream>`` with the reason.
2. One round trip asks which envelope ids the group has already handled (a redelivery,
   or a producer that published twice); those are acked and skipped. A handler that
   makes a repeat harmless itself can do without this (``check_handled_first=False``):
   a repeat then runs the handler again, and the commit below still refuses to publish
   its messages a second time.
3. The handler runs. Envelopes it publishes through ``delivery.publish`` are written by
   one atomic script together with the ack and the "handled" marker, so they happen
   exactly once. A handler whose effects live elsewhere (Postgres) makes them idempotent
   there too, e.g. with :func:`shared.db.claim_message` in the same transaction. An entry
   whose handler published nothing has no outputs to keep atomic with its ack: its
   marker and ack are sent in the same round trip as the next read (most entries, such
   as ticks, are of this kind), so a busy stream costs one round trip per batch.
4. A handler that raises leaves the entry pending; it is retried once it has been idle
   ``claim_min_idle_ms`` (XAUTOCLAIM), and dead-lettered after ``max_deliveries`` attempts.

A stream of data that the next entry supersedes (ticks, book snapshots) can be read
``at_most_once``: with XREADGROUP's NOACK, so nothing is pending and nothing is acked. An
entry its handler fails on is dead-lettered at once (retried half a minute later it
would be stale anyway), and the batch in hand when the consumer dies is not handled
again. Each read is then one plain command instead of a pipeline with the last batch's
acks, which costs about half the CPU per tick.

Such a stream can also be read on an interval (``read_interval_ms``): after a read that
did not fill its batch, the next waits until the interval has passed since it began. A
service that needs only the latest state, not each entry as it lands, then wakes once an
interval for a batch instead of once an entry; at 500 ticks a second and 50 ms, that is
20 wake-ups a second instead of hundreds, and each entry waits at most the interval. A
read that fills its batch is followed at once, so a backlog is never read at the
interval's pace.

Entries left pending by a consumer that died are claimed the same way, on start and every
``claim_interval_s``. ``claim_min_idle_ms`` must exceed the longest handler run, or a slow
handler's entry is claimed while it still runs; the marker check in the commit then keeps
the second run's outputs from being written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.aio import pause_unless_stopped
from shared.bus import metrics
from shared.bus.commit import Committer, Delivery
from shared.bus.dead_letter import DeadLetters
from shared.bus.keys import BusKeys, text
from shared.bus.publisher import ENVELOPE_FIELD
from shared.logging import get_logger
from shared.messages import REGISTRY, Envelope, MessageError, MessageRegistry, Payload, decode

__all__ = ["ConsumerSettings", "Delivery", "Handler", "StreamConsumer"]

_log = get_logger("shared.bus")
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
Fields = dict[bytes, bytes]
Handler = Callable[[Envelope[Payload], Delivery], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSettings:
    stream: str
    group: str
    consumer: str
    batch_size: int = 16
    block_ms: int = 1000
    max_deliveries: int = 5
    claim_min_idle_ms: int = 30_000
    claim_interval_s: float = 5.0
    start_id: str = "0"
    """Where a new group starts: ``0`` (everything still in the stream) or ``$`` (new only)."""
    handled_ttl_s: int | None = 86_400
    """How long "handled" markers are kept; ``None`` turns deduplication off (for streams
    whose handlers are naturally idempotent, such as ticks)."""
    check_handled_first: bool = True
    """Look the batch's markers up before handling it. Off, a repeat runs the handler
    again and the commit refuses its messages: for a handler a repeat does no harm to,
    one round trip a batch fewer."""
    at_most_once: bool = False
    """Read with NOACK: no entry is pending, a failed one is dead-lettered at once, and
    the batch in hand at a crash is not handled again (see the module docstring)."""
    read_interval_ms: int = 0
    """At least this long from one read to the next unless a read fills its batch: a busy
    stream is then taken in batches, one wake-up an interval instead of one an entry,
    and each entry waits up to this long (see the module docstring)."""
    outbox_maxlen: int = 100_000
    dead_letter_maxlen: int = 100_000
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if self.batch_size < 1 or self.block_ms < 1 or self.claim_min_idle_ms < 1:
            raise ValueError("batch_size, block_ms and claim_min_idle_ms must be positive")
        if self.read_interval_ms < 0:
            raise ValueError("read_interval_ms must not be negative")
        if self.at_most_once and self.handled_ttl_s is not None:
            raise ValueError("at_most_once reads keep no handled markers: set handled_ttl_s=None")


@dataclass
class _Acks:
    """Handled entries that published nothing, acked with the next round trip."""

    entry_ids: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # an earlier failure is on record


@dataclass
class _Entry:
    entry_id: str
    fields: Fields
    envelope: Envelope[Payload]
    attempt: int


class StreamConsumer:
    """Runs ``handler`` for every entry of one stream, as one consumer of one group."""

    def __init__(
        self,
        redis: Redis,
        settings: ConsumerSettings,
        handler: Handler,
        *,
        keys: BusKeys | None = None,
        registry: MessageRegistry = REGISTRY,
    ) -> None:
        keys = keys or BusKeys()
        self.settings = settings
        self._redis = redis
        self._handler = handler
        self._keys = keys
        self._registry = registry
        self._stream_key = keys.stream(settings.stream)
        self._errors_key = keys.errors(settings.stream, settings.group)
        self._labels = (settings.stream, settings.group)
        # Label lookups once, not per message: they sit on the hot path.
        metrics.FAILED.labels(*self._labels)  # at zero from the start, so a rate exists
        self._handled = metrics.HANDLED.labels(*self._labels)
        self._duplicates = metrics.DUPLICATES.labels(*self._labels)
        self._handle_seconds = metrics.HANDLE_SECONDS.labels(*self._labels)
        self._committer = Committer(
            redis, keys, settings.stream, settings.group, outbox_maxlen=settings.outbox_maxlen
        )
        self._dead_letters = DeadLetters(redis, keys, settings)
        self._acks = _Acks()
        self._stop = asyncio.Event()
        self._group_ready = False
        self.connected = False

    # --- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to exit after the entry in hand is handled and acked."""
        self._stop.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; Redis outages are waited out with backoff."""
        monitor = asyncio.create_task(self._monitor_lag(), name=f"lag-{self.settings.stream}")
        try:
            await self._consume()
            with contextlib.suppress(*_CONNECTION_ERRORS, ResponseError):
                await self._flush_acks()  # else they are handled again by the next run
        finally:
            # The monitor ends on the stop flag: a cancel can be lost inside redis-py's
            # wait_for on Python 3.11, so it is only the fallback.
            self._stop.set()
            done, _ = await asyncio.wait([monitor], timeout=self.settings.claim_interval_s + 1)
            if not done:
                monitor.cancel()
            self.connected = False

    async def _consume(self) -> None:
        backoff = self.settings.reconnect_initial_s
        next_claim = next_read = 0.0
        interval_s = self.settings.read_interval_ms / 1000
        while not self._stop.is_set():
            if interval_s and (wait_s := next_read - time.monotonic()) > 0:
                await pause_unless_stopped(self._stop, wait_s)
                continue
            try:
                if not self._group_ready:
                    await self._ensure_group()
                    await self._handle_own_pending()
                    next_claim = 0.0
                if time.monotonic() >= next_claim:
                    await self.claim_abandoned()
                    next_claim = time.monotonic() + self.settings.claim_interval_s
                started = time.monotonic()
                # a full batch means more is waiting: read again at once
                if await self._read_next() < self.settings.batch_size:
                    next_read = started + interval_s
                self.connected = True
                backoff = self.settings.reconnect_initial_s
            except _CONNECTION_ERRORS as exc:
                # On reconnect, redo the start-up recovery: entries this consumer had in
                # hand are handled at once instead of after claim_min_idle_ms.
                self._group_ready = False
                backoff = await self._wait_after_error("redis unavailable", exc, backoff)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # stream or group lost, e.g. Redis restarted empty
                    self._group_ready = False
                backoff = await self._wait_after_error("redis refused a command", exc, backoff)
            except Exception as exc:  # the loop must outlive any bug in one pass
                _log.exception("consumer pass failed", stream=self.settings.stream)
                backoff = await self._wait_after_error("consumer pass failed", exc, backoff)

    async def _wait_after_error(self, what: str, exc: BaseException, backoff: float) -> float:
        self.connected = False
        metrics.REDIS_ERRORS.labels(*self._labels).inc()
        _log.warning(
            what,
            stream=self.settings.stream,
            group=self.settings.group,
            error=f"{type(exc).__name__}: {exc}",
            retry_in_s=round(backoff, 3),
        )
        await pause_unless_stopped(self._stop, backoff)
        return min(backoff * 2, self.settings.reconnect_max_s)

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                self._stream_key, self.settings.group, id=self.settings.start_id, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # --- reading ---------------------------------------------------------------------

    async def _read_next(self) -> int:
        """Read and handle the next batch; returns how many entries it read."""
        if self.settings.at_most_once:
            return await self._read_new_at_most_once()
        return await self._read_new()

    async def _read_new(self) -> int:
        """Ack what the last batch left to ack and read the next, in one round trip;
        returns how many entries it read."""
        async with self._redis.pipeline(transaction=False) as pipe:
            acks = self._queue_acks(pipe)
            pipe.xreadgroup(
                self.settings.group,
                self.settings.consumer,
                {self._stream_key: ">"},
                count=self.settings.batch_size,
                block=self.settings.block_ms,
            )
            response = (await self._execute(pipe, acks))[-1]
        entries = _entries(response)
        await self._process(entries, attempts={})
        return len(entries)

    async def _read_new_at_most_once(self) -> int:
        """Read the next batch with NOACK: nothing to ack, so one plain command; returns
        how many entries it read."""
        response = await self._redis.xreadgroup(
            self.settings.group,
            self.settings.consumer,
            {self._stream_key: ">"},
            count=self.settings.batch_size,
            block=self.settings.block_ms,
            noack=True,
        )
        entries = _entries(response)
        await self._process(entries, attempts={})
        return len(entries)

    def _queue_acks(self, pipe: Any) -> _Acks:
        """Queue the deferred acks on ``pipe``; markers first, so a redelivery after a
        failure between the two is known as handled."""
        acks, self._acks = self._acks, _Acks()
        ttl = self.settings.handled_ttl_s
        for marker in acks.markers:
            pipe.set(marker, "1", ex=ttl)
        if acks.entry_ids:
            pipe.xack(self._stream_key, self.settings.group, *acks.entry_ids)
        if acks.retried:
            pipe.hdel(self._errors_key, *acks.retried)
        return acks

    async def _execute(self, pipe: Any, acks: _Acks) -> list[Any]:
        """Run ``pipe``; acks that may not have landed are kept for the next try (acking
        twice is harmless)."""
        try:
            replies: list[Any] = await pipe.execute()
        except BaseException:
            self._acks.entry_ids[:0] = acks.entry_ids
            self._acks.markers[:0] = acks.markers
            self._acks.retried[:0] = acks.retried
            raise
        if acks.entry_ids:
            self._handled.inc(len(acks.entry_ids))
        return replies

    async def _flush_acks(self) -> None:
        if not self._acks.entry_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._execute(pipe, self._queue_acks(pipe))

    async def _handle_own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart and never acked."""
        await self._flush_acks()
        last = "0"
        while not self._stop.is_set():
            response = await self._redis.xreadgroup(
                self.settings.group,
                self.settings.consumer,
                {self._stream_key: last},
                count=self.settings.batch_size,
            )
            entries = _entries(response)
            if not entries:
                break
            await self._process(entries, attempts=await self._delivery_counts(entries))
            last = entries[-1][0]
        await self._flush_acks()

    async def claim_abandoned(self) -> int:
        """Take over entries idle longer than ``claim_min_idle_ms``; returns how many."""
        await self._flush_acks()  # a claimed entry's twin may be among them
        start, claimed_total = "0-0", 0
        while not self._stop.is_set():
            start_raw, claimed, deleted = await self._redis.xautoclaim(
                self._stream_key,
                self.settings.group,
                self.settings.consumer,
                min_idle_time=self.settings.claim_min_idle_ms,
                start_id=start,
                count=self.settings.batch_size,
            )
            if deleted:
                await self._dead_letters.report_trimmed([text(i) for i in deleted])
            entries = [(text(i), f) for i, f in claimed if f is not None]
            claimed_total += len(entries)
            if entries:
                await self._process(entries, attempts=await self._delivery_counts(entries))
            start = text(start_raw)
            if start == "0-0":
                break
        await self._flush_acks()
        return claimed_total

    async def _delivery_counts(self, entries: list[tuple[str, Fields]]) -> dict[str, int]:
        pending = await self._redis.xpending_range(
            self._stream_key,
            self.settings.group,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) + 100,
            consumername=self.settings.consumer,
        )
        return {text(row["message_id"]): int(row["times_delivered"]) for row in pending}

    async def _monitor_lag(self) -> None:
        """Export lag and pending on its own schedule, so a stuck handler still shows up."""
        while not self._stop.is_set():
            try:
                await self._update_lag()
            except ResponseError:
                pass  # the stream or group does not exist yet
            except _CONNECTION_ERRORS:
                pass  # the consume loop reports and waits out outages
            await pause_unless_stopped(self._stop, self.settings.claim_interval_s)

    async def _update_lag(self) -> None:
        for group in await self._redis.xinfo_groups(self._stream_key):
            if text(group["name"]) == self.settings.group:
                metrics.CONSUMER_PENDING.labels(*self._labels).set(group.get("pending") or 0)
                metrics.CONSUMER_LAG.labels(*self._labels).set(group.get("lag") or 0)

    # --- handling --------------------------------------------------------------------

    async def _process(self, raw: list[tuple[str, Fields]], *, attempts: dict[str, int]) -> None:
        entries = []
        trimmed = [entry_id for entry_id, fields in raw if not fields]
        if trimmed:  # still pending for us, but the stream no longer holds them
            await self._dead_letters.report_trimmed(trimmed)
        for entry_id, fields in raw:
            attempt = attempts.get(entry_id, 1)
            if not fields:
                continue
            if attempt > self.settings.max_deliveries:
                # Before decoding: an entry that kills its consumer while decoding ends here.
                await self._dead_letters.give_up(entry_id, fields, attempt)
                continue
            envelope = await self._decode_or_dead_letter(entry_id, fields)
            if envelope is not None:
                entries.append(_Entry(entry_id, fields, envelope, attempt))
        handled_before = await self._already_handled(entries)
        handled_now: set[str] = set()  # the same envelope twice in one batch
        for entry, done in zip(entries, handled_before, strict=True):
            if self._stop.is_set():
                return  # the rest stays pending for this consumer, handled on restart
            if done or entry.envelope.id in handled_now:
                await self._ack_duplicate(entry.entry_id)
            elif await self._handle(entry) and self.settings.handled_ttl_s is not None:
                handled_now.add(entry.envelope.id)

    async def _decode_or_dead_letter(
        self, entry_id: str, fields: Fields
    ) -> Envelope[Payload] | None:
        raw = fields.get(ENVELOPE_FIELD.encode())
        try:
            if raw is None:
                raise MessageError(f"entry has no {ENVELOPE_FIELD!r} field")
            return decode(raw, self._registry)
        except Exception as exc:  # one bad entry must never hold up the rest of its batch
            error = str(exc) if isinstance(exc, MessageError) else f"{type(exc).__name__}: {exc}"
            await self._dead_letters.move(entry_id, fields, "malformed", error, attempt=1)
            return None

    async def _already_handled(self, entries: list[_Entry]) -> list[bool]:
        if self.settings.handled_ttl_s is None or not self.settings.check_handled_first:
            return [False] * len(entries)
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.exists(
                    self._keys.handled(self.settings.stream, self.settings.group, entry.envelope.id)
                )
            return [bool(found) for found in await pipe.execute()]

    async def _handle(self, entry: _Entry) -> bool:
        """Run the handler and commit; True once the envelope counts as handled."""
        started = time.perf_counter()
        delivery = Delivery(entry.entry_id, self.settings.stream, entry.attempt)
        try:
            await self._handler(entry.envelope, delivery)
        except Exception as exc:
            await self._record_failure(entry, exc)
            return False
        if not delivery.outbox:  # nothing to keep atomic with an ack, if there is one
            if self.settings.at_most_once:  # NOACK: nothing to ack
                self._handled.inc()
            else:
                self._defer_ack(entry)
            self._handle_seconds.observe(time.perf_counter() - started)
            return True
        if await self._committer.commit(entry.envelope.id, delivery, self.settings.handled_ttl_s):
            self._handled.inc()
            self._handle_seconds.observe(time.perf_counter() - started)
        else:
            self._duplicates.inc()
        return True

    def _defer_ack(self, entry: _Entry) -> None:
        self._acks.entry_ids.append(entry.entry_id)
        if self.settings.handled_ttl_s is not None:
            self._acks.markers.append(
                self._keys.handled(self.settings.stream, self.settings.group, entry.envelope.id)
            )
        if entry.attempt > 1:
            self._acks.retried.append(entry.entry_id)

    async def _ack_duplicate(self, entry_id: str) -> None:
        await self._redis.xack(self._stream_key, self.settings.group, entry_id)
        self._duplicates.inc()

    async def _record_failure(self, entry: _Entry, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        metrics.FAILED.labels(*self._labels).inc()
        _log.warning(
            "handler failed",
            stream=self.settings.stream,
            group=self.settings.group,
            entry_id=entry.entry_id,
            message_id=entry.envelope.id,
            message_type=entry.envelope.type,
            attempt=entry.attempt,
            error=error,
        )
        if entry.attempt >= self.settings.max_deliveries or self.settings.at_most_once:
            await self._dead_letters.move(
                entry.entry_id, entry.fields, "handler_failed", error, entry.attempt
            )
        else:
            await self._redis.hset(self._errors_key, entry.entry_id, error)


def _entries(response: Any) -> list[tuple[str, Fields]]:
    """Flatten an XREADGROUP reply (``[[stream, [(id, fields), ...]], ...]``)."""
    return [
        (text(entry_id), fields) for _stream, batch in response or () for entry_id, fields in batch
    ]
