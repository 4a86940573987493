"""Postgres access: the engine factory and idempotent message handling.

A consumer whose effect is a Postgres write makes it exactly-once by claiming the
message id in the same transaction as the effect: a redelivered message finds its
claim already there and writes nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.db.models import ProcessedMessage

__all__ = ["claim_message", "make_engine", "sqlalchemy_url"]


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
