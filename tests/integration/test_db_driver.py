"""``driver_transaction``: the hot path's transactions through psycopg on the engine's pool."""

from __future__ import annotations

import logging

import psycopg
import pytest

from shared.db import driver_transaction, make_engine


async def _rows(engine) -> list[tuple[str]]:  # type: ignore[no-untyped-def]
    async with driver_transaction(engine) as connection:
        cursor = await connection.execute("select note from notes order by note")
        return await cursor.fetchall()


async def test_a_block_that_ends_is_committed_and_one_that_raises_writes_nothing(pg_engine):
    async with driver_transaction(pg_engine) as connection:
        await connection.execute("create table notes (note text primary key)")
        await connection.execute("insert into notes values (%s)", ("kept",))
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with driver_transaction(pg_engine) as connection:
            await connection.execute("insert into notes values (%s)", ("dropped",))
            raise RuntimeError("changed my mind")
    with pytest.raises(psycopg.errors.UniqueViolation):
        async with driver_transaction(pg_engine) as connection:
            await connection.execute("insert into notes values (%s)", ("also dropped",))
            await connection.execute("insert into notes values (%s)", ("kept",))
    assert await _rows(pg_engine) == [("kept",)]


async def test_a_connection_whose_server_went_away_is_dropped_not_reused(
    database_url, pg_schema, caplog
):  # fmt: skip
    # One pooled connection and no check on checkout: the dead one must be dropped by the
    # failed transaction, not handed back to the pool to fail its reset there.
    engine = make_engine(
        database_url, pool_size=1, max_overflow=0, pool_pre_ping=False,
        connect_args={"options": f"-csearch_path={pg_schema}"},
    )  # fmt: skip
    try:
        async with driver_transaction(engine) as connection:
            cursor = await connection.execute("select pg_backend_pid()")
            (first_pid,) = await cursor.fetchone() or (None,)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("select pg_terminate_backend(%s)", (first_pid,))
        with pytest.raises(psycopg.OperationalError):
            async with driver_transaction(engine) as connection:
                await connection.execute("select 1")
        async with driver_transaction(engine) as connection:
            cursor = await connection.execute("select pg_backend_pid()")
            (second_pid,) = await cursor.fetchone() or (None,)
        assert second_pid is not None and second_pid != first_pid
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await engine.dispose()
