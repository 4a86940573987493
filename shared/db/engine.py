"""Postgres access: the engine factory, hot-path transactions, idempotent message handling.

A consumer whose effect is a Postgres write makes it exactly-once by claiming the
message id in the same transaction as the effect: a redelivered message finds its
claim already there and writes nothing.

Risk's and execution's writes (a decision, an intent and its orders, a fill, a state
change) go through a :class:`Writer`: psycopg on connections of the engine's pool held
for them, with SQL written once. SQLAlchemy builds, caches and compiles each of its
statements per call, which costs about a millisecond a statement; psycopg sends the SQL
as it is, and prepares a statement on the server once it has run a few times. A batch's
statements go to the server together, in one round trip, and run there as one
transaction.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.db.models import ProcessedMessage

__all__ = ["Batch", "BatchResult", "Writer", "claim_message", "make_engine", "sqlalchemy_url",
           "unique_violation"]  # fmt: skip


def sqlalchemy_url(url: str | SecretStr) -> str:
    """The URL with the psycopg 3 driver named, whatever form it was given in."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def make_engine(url: str | SecretStr, **options: Any) -> AsyncEngine:
    """An async psycopg 3 engine; parameters are kept out of error messages."""
    options.setdefault("pool_pre_ping", True)
    return create_async_engine(sqlalchemy_url(url), hide_parameters=True, **options)


class BatchResult:
    """What one statement of a :class:`Batch` returned, readable once the batch is sent."""

    def __init__(self, batch: Batch, cursor: psycopg.AsyncCursor[Any]) -> None:
        self._batch = batch
        self._cursor = cursor

    async def first(self) -> tuple[Any, ...] | None:
        """The statement's first row (``returning``), or None if it returned none."""
        if not self._batch.sent:
            # psycopg would sync the pipeline to read it, committing what was queued so far
            raise RuntimeError("a batch's results are read after the batch is sent")
        return await self._cursor.fetchone()


class Batch:
    """Statements queued by :meth:`Writer.batch`, sent and run together when its block ends."""

    def __init__(self, driver: psycopg.AsyncConnection[Any]) -> None:
        self._driver = driver
        self.sent = False

    async def execute(self, query: str, params: Mapping[str, Any]) -> BatchResult:
        if self.sent:
            raise RuntimeError("this batch was sent: write the statement in a new one")
        return BatchResult(self, await self._driver.execute(query, params))


class Writer:
    """Hot-path transactions (:meth:`batch`) on connections of ``engine``'s pool held for
    them: a connection is checked out of the pool once, not per transaction. A checkout
    costs about half a millisecond after the process has idled (the pool's liveness ping
    is a round trip of its own), and an order is written twice on its way (risk's
    decision, execution's intent).

    Up to ``keep`` connections are held between batches; more run at once if the callers
    ask (execution drives intents concurrently), taken from the pool and handed back to it
    after. A held connection is checked before each use without a round trip: one whose
    server closed it (a restart, a terminated backend) or sent anything unasked is
    dropped and replaced, so a batch does not fail on a connection that died while idle.
    :meth:`close` closes the held connections; call it when the service stops."""

    def __init__(self, engine: AsyncEngine, *, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self._engine = engine
        self._keep = keep
        self._idle: list[_Held] = []
        self._closed = False

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """One transaction in one round trip: BEGIN, the statements queued in the block and
        COMMIT are pipelined and sent together as the block ends. If a statement fails, the
        server skips the rest (COMMIT too) and the error is raised here, as the block ends;
        if the block raises, it is rolled back. Either way nothing of it is written.
        Results are read after the block (:meth:`BatchResult.first`).

        A connection the error left broken (Postgres went away) is dropped, not reused."""
        held = await self._take()
        driver = held.driver
        batch = Batch(driver)
        try:
            async with driver.pipeline():
                await driver.execute("begin")
                yield batch
                await driver.execute("commit")
            batch.sent = True
        except BaseException:
            if driver.info.transaction_status in _OPEN and _alive(driver):
                with contextlib.suppress(psycopg.Error):
                    await driver.execute("rollback")
            raise
        finally:
            await self._give_back(held)

    async def close(self) -> None:
        """Close the held connections, and any in use as its batch ends. (Closed, not
        handed back: the engine may have been disposed of already, and a connection
        handed back to a pool it replaced would never be closed.)"""
        self._closed = True
        idle, self._idle = self._idle, []
        for held in idle:
            await held.connection.invalidate()

    async def _take(self) -> _Held:
        while self._idle:
            held = self._idle.pop()
            if _usable(held.driver):
                return held
            await held.connection.invalidate()  # it died while idle: dropped from the pool
        connection = await self._engine.connect()
        try:
            driver = (await connection.get_raw_connection()).driver_connection
            assert isinstance(driver, psycopg.AsyncConnection)
            # psycopg sends no BEGIN of its own (each would be a round trip): ours is queued
            await driver.set_autocommit(True)
        except BaseException:
            await connection.close()
            raise
        return _Held(connection, driver)

    async def _give_back(self, held: _Held) -> None:
        if self._closed or not _usable(held.driver):
            await held.connection.invalidate()
        elif len(self._idle) < self._keep:
            self._idle.append(held)
        else:  # back to the pool as the pool hands connections out: not in autocommit
            await held.driver.set_autocommit(False)
            await held.connection.close()


_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


@dataclass(frozen=True)
class _Held:
    connection: AsyncConnection
    driver: psycopg.AsyncConnection[Any]


def _alive(driver: psycopg.AsyncConnection[Any]) -> bool:
    return not (driver.closed or driver.broken)


def _usable(driver: psycopg.AsyncConnection[Any]) -> bool:
    """Open, idle, and with nothing to read: an idle connection the server wrote to was
    closed by it (or got a notice nobody asked for), either way not one to write on."""
    if not _alive(driver) or driver.info.transaction_status is not TransactionStatus.IDLE:
        return False
    poll = select.poll()  # not select.select: that refuses descriptors above 1023
    poll.register(driver.fileno(), select.POLLIN)
    return not poll.poll(0)


def unique_violation(exc: BaseException, constraint: str) -> bool:
    """Whether ``exc`` is Postgres refusing a row that ``constraint`` already holds."""
    return (
        isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name == constraint
    )


async def claim_message(connection: AsyncConnection, consumer_group: str, message_id: str) -> bool:
    """Record that ``consumer_group`` handles ``message_id``; False if it already did.

    Call inside the transaction that holds the message's effects: if the transaction
    rolls back, so does the claim, and the message can be handled again.
    """
    statement = (
        insert(ProcessedMessage)
        .values(consumer_group=consumer_group, message_id=message_id)
        .on_conflict_do_nothing()
        .returning(ProcessedMessage.message_id)
    )
    return (await connection.execute(statement)).first() is not None
