"""Postgres access: the engine factory, hot-path transactions, idempotent message handling.

A consumer whose effect is a Postgres write makes it exactly-once by claiming the
message id in the same transaction as the effect: a redelivered message finds its
claim already there and writes nothing.

Risk's and execution's writes (a decision, an intent and its orders, a fill, a state
change) go through :func:`write_batch`: psycopg on a connection of the engine's pool, with
SQL written once. SQLAlchemy builds, caches and compiles each of its statements per call,
which costs about a millisecond a statement; psycopg sends the SQL as it is, and prepares a
statement on the server once it has run a few times. A batch's statements go to the server
together, in one round trip, and run there as one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.db.models import ProcessedMessage

__all__ = ["Batch", "BatchResult", "claim_message", "make_engine", "sqlalchemy_url",
           "unique_violation", "write_batch"]  # fmt: skip


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
    """Statements queued by :func:`write_batch`, sent and run together when its block ends."""

    def __init__(self, driver: psycopg.AsyncConnection[Any]) -> None:
        self._driver = driver
        self.sent = False

    async def execute(self, query: str, params: Mapping[str, Any]) -> BatchResult:
        if self.sent:
            raise RuntimeError("this batch was sent: write the statement in a new one")
        return BatchResult(self, await self._driver.execute(query, params))


@contextlib.asynccontextmanager
async def write_batch(engine: AsyncEngine) -> AsyncIterator[Batch]:
    """One transaction on a connection of ``engine``'s pool, through psycopg itself, in
    one round trip: BEGIN, the statements queued in the block and COMMIT are pipelined
    and sent together as the block ends. If a statement fails, the server skips the rest
    (COMMIT too) and the error is raised here, as the block ends; if the block raises, it
    is rolled back. Either way nothing of it is written. Results are read after the block
    (:meth:`BatchResult.first`).

    A connection the error left broken (Postgres went away) is dropped from the pool, not
    reused."""
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        # psycopg sends no BEGIN of its own (each would be a round trip): ours is queued
        await driver.set_autocommit(True)
        batch = Batch(driver)
        try:
            async with driver.pipeline():
                await driver.execute("begin")
                yield batch
                await driver.execute("commit")
            batch.sent = True
        except BaseException:
            await _leave_idle_or_drop(connection, driver)
            raise
        finally:
            if not driver.closed:
                await driver.set_autocommit(False)


async def _leave_idle_or_drop(
    connection: AsyncConnection, driver: psycopg.AsyncConnection[Any]
) -> None:
    """After a failed batch: roll back what the server still holds open (the block raised,
    or a statement failed); a connection that cannot be brought back to idle (Postgres
    went away, the rollback failed) is closed and dropped from the pool."""
    open_transaction = driver.info.transaction_status is not TransactionStatus.IDLE
    if open_transaction and not (driver.broken or driver.closed):
        with contextlib.suppress(psycopg.Error):
            await driver.execute("rollback")
    if (
        driver.broken
        or driver.closed
        or driver.info.transaction_status is not TransactionStatus.IDLE
    ):
        await connection.invalidate()


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
