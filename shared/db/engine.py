"""Postgres access: the engine factory, hot-path transactions, idempotent message handling.

A consumer whose effect is a Postgres write makes it exactly-once by claiming the
message id in the same transaction as the effect: a redelivered message finds its
claim already there and writes nothing.

Risk's and execution's writes (a decision, an intent and its orders, a fill, a state
change) go through :func:`driver_transaction`: psycopg on a connection of the engine's
pool, with SQL written once. SQLAlchemy builds, caches and compiles each of its statements per
call, which costs about a millisecond a statement; psycopg sends the SQL as it is, and
prepares a statement on the server once it has run a few times.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.db.models import ProcessedMessage

__all__ = ["DriverConnection", "claim_message", "driver_transaction", "make_engine",
           "sqlalchemy_url"]  # fmt: skip

DriverConnection = psycopg.AsyncConnection[Any]


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


@contextlib.asynccontextmanager
async def driver_transaction(engine: AsyncEngine) -> AsyncIterator[DriverConnection]:
    """One transaction on a connection of ``engine``'s pool, through psycopg itself:
    committed if the block ends normally, rolled back if it raises. A connection the
    error left broken (Postgres went away) is dropped from the pool, not reused."""
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        try:
            async with driver.transaction():
                yield driver
        except BaseException:
            if driver.broken or driver.closed:
                await connection.invalidate()
            raise


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
