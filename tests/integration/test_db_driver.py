"""``write_batch``: the hot path's transactions, psycopg on the engine's pool, one round trip."""

from __future__ import annotations

import logging

import psycopg
import pytest
from sqlalchemy import text

from shared.db import make_engine, unique_violation, write_batch

INSERT = "insert into notes values (%(note)s)"


@pytest.fixture
async def engine(database_url, pg_schema):  # type: ignore[no-untyped-def]
    """An engine whose pool holds one connection, on a schema with a ``notes`` table."""
    engine = make_engine(
        database_url, pool_size=1, max_overflow=0,
        connect_args={"options": f"-csearch_path={pg_schema}"},
    )  # fmt: skip
    async with engine.begin() as connection:
        await connection.execute(text("create table notes (note text primary key)"))
    yield engine
    await engine.dispose()


async def _notes(engine) -> list[str]:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        return [row.note for row in await connection.execute(text("select note from notes"))]


async def test_a_batch_runs_as_one_transaction_committed_when_its_block_ends(engine):
    async with write_batch(engine) as batch:
        await batch.execute(INSERT, {"note": "a"})
        first = await batch.execute("select txid_current()", {})
        await batch.execute(INSERT, {"note": "b"})
        second = await batch.execute("select txid_current()", {})
        assert not batch.sent
    assert batch.sent
    assert await first.first() == await second.first()
    assert sorted(await _notes(engine)) == ["a", "b"]


async def test_a_failed_statement_or_a_raising_block_writes_nothing(engine):
    async with write_batch(engine) as batch:
        await batch.execute(INSERT, {"note": "kept"})
    with pytest.raises(psycopg.errors.UniqueViolation) as refused:
        async with write_batch(engine) as batch:
            await batch.execute(INSERT, {"note": "dropped"})
            await batch.execute(INSERT, {"note": "kept"})
            await batch.execute(INSERT, {"note": "skipped"})
    assert unique_violation(refused.value, "notes_pkey")
    assert not unique_violation(refused.value, "another_key")
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with write_batch(engine) as batch:
            await batch.execute(INSERT, {"note": "also dropped"})
            raise RuntimeError("changed my mind")
    assert await _notes(engine) == ["kept"]
    # the one pooled connection is fit for the next batch, and for SQLAlchemy's own
    # transactions: not left in autocommit, so this rollback undoes the insert
    async with write_batch(engine) as batch:
        await batch.execute(INSERT, {"note": "next"})
    async with engine.connect() as connection:
        await connection.execute(text("insert into notes values ('rolled back')"))
        await connection.rollback()
    assert sorted(await _notes(engine)) == ["kept", "next"]


async def test_results_are_read_once_the_batch_is_sent(engine):
    returning = "insert into notes values (%(note)s) on conflict do nothing returning note"
    async with write_batch(engine) as batch:
        new = await batch.execute(returning, {"note": "a"})
        with pytest.raises(RuntimeError, match="after the batch is sent"):
            await new.first()
    async with write_batch(engine) as batch:
        again = await batch.execute(returning, {"note": "a"})
        other = await batch.execute(returning, {"note": "b"})
    assert (await new.first(), await again.first(), await other.first()) == (("a",), None, ("b",))
    with pytest.raises(RuntimeError, match="was sent"):
        await batch.execute(returning, {"note": "c"})


async def test_a_connection_whose_server_went_away_is_dropped_not_reused(
    database_url, pg_schema, caplog
):  # fmt: skip
    # One pooled connection and no check on checkout: the dead one must be dropped by the
    # failed batch, not handed back to the pool to fail its reset there.
    engine = make_engine(
        database_url, pool_size=1, max_overflow=0, pool_pre_ping=False,
        connect_args={"options": f"-csearch_path={pg_schema}"},
    )  # fmt: skip
    try:
        async with write_batch(engine) as batch:
            pid = await batch.execute("select pg_backend_pid()", {})
        (first_pid,) = await pid.first() or (None,)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("select pg_terminate_backend(%s)", (first_pid,))
        with pytest.raises(psycopg.OperationalError):
            async with write_batch(engine) as batch:
                await batch.execute("select 1", {})
        async with write_batch(engine) as batch:
            pid = await batch.execute("select pg_backend_pid()", {})
        (second_pid,) = await pid.first() or (None,)
        assert second_pid is not None and second_pid != first_pid
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await engine.dispose()
