"""``Writer``: the hot path's transactions, psycopg on connections held out of the engine's
pool, one round trip each."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest
from sqlalchemy import text

from shared.db import Writer, make_engine, unique_violation

INSERT = "insert into notes values (%(note)s)"
PID = "select pg_backend_pid()"


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


async def _pid(writer: Writer) -> int:
    async with writer.batch() as batch:
        result = await batch.execute(PID, {})
    (pid,) = await result.first() or (None,)
    assert isinstance(pid, int)
    return pid


async def test_a_batch_runs_as_one_transaction_on_a_connection_held_for_the_next(engine):
    writer = Writer(engine)
    async with writer.batch() as batch:
        await batch.execute(INSERT, {"note": "a"})
        first = await batch.execute("select txid_current()", {})
        await batch.execute(INSERT, {"note": "b"})
        second = await batch.execute("select txid_current()", {})
        pid = await batch.execute(PID, {})
        assert not batch.sent
    assert batch.sent
    assert await first.first() == await second.first()
    # the same server process: the connection stayed out of the pool, checked out once
    assert await _pid(writer) == (await pid.first() or (None,))[0]
    held = (await pid.first() or (None,))[0]
    assert engine.pool.checkedout() == 1
    await writer.close()  # closed, not handed back to the pool
    assert engine.pool.checkedout() == 0
    async with engine.connect() as connection:
        assert await connection.scalar(text(PID)) != held
    assert sorted(await _notes(engine)) == ["a", "b"]


async def test_a_failed_statement_or_a_raising_block_writes_nothing(engine):
    writer = Writer(engine)
    async with writer.batch() as batch:
        await batch.execute(INSERT, {"note": "kept"})
    pid = await _pid(writer)
    with pytest.raises(psycopg.errors.UniqueViolation) as refused:
        async with writer.batch() as batch:
            await batch.execute(INSERT, {"note": "dropped"})
            await batch.execute(INSERT, {"note": "kept"})
            await batch.execute(INSERT, {"note": "skipped"})
    assert unique_violation(refused.value, "notes_pkey")
    assert not unique_violation(refused.value, "another_key")
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with writer.batch() as batch:
            await batch.execute(INSERT, {"note": "also dropped"})
            raise RuntimeError("changed my mind")
    # rolled back, and still held: the next batch runs on the same connection
    async with writer.batch() as batch:
        await batch.execute(INSERT, {"note": "next"})
    assert await _pid(writer) == pid
    await writer.close()
    assert sorted(await _notes(engine)) == ["kept", "next"]


async def test_results_are_read_once_the_batch_is_sent(engine):
    writer = Writer(engine)
    returning = "insert into notes values (%(note)s) on conflict do nothing returning note"
    async with writer.batch() as batch:
        new = await batch.execute(returning, {"note": "a"})
        with pytest.raises(RuntimeError, match="after the batch is sent"):
            await new.first()
    async with writer.batch() as batch:
        again = await batch.execute(returning, {"note": "a"})
        other = await batch.execute(returning, {"note": "b"})
    assert (await new.first(), await again.first(), await other.first()) == (("a",), None, ("b",))
    with pytest.raises(RuntimeError, match="was sent"):
        await batch.execute(returning, {"note": "c"})
    await writer.close()


async def _terminate(database_url: str, pid: int) -> None:
    """End a server process and wait until it is gone."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        await admin.execute("select pg_terminate_backend(%s)", (pid,))
        for _ in range(500):
            cursor = await admin.execute("select 1 from pg_stat_activity where pid = %s", (pid,))
            if await cursor.fetchone() is None:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"server process {pid} still there")


async def test_a_held_connection_that_died_while_idle_is_replaced_before_a_batch_uses_it(
    engine, database_url, caplog
):  # fmt: skip
    # One pooled connection and the pool's own ping on checkout: the dead one must be
    # noticed by the writer (no round trip), and dropped from the pool, not handed back.
    writer = Writer(engine)
    first = await _pid(writer)
    await _terminate(database_url, first)
    async with writer.batch() as batch:
        await batch.execute(INSERT, {"note": "written"})
    second = await _pid(writer)
    assert second != first
    await writer.close()
    assert await _notes(engine) == ["written"]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_connection_that_dies_in_a_batch_fails_it_and_is_dropped(engine, caplog):
    writer = Writer(engine)
    first = await _pid(writer)
    with pytest.raises(psycopg.OperationalError):
        async with writer.batch() as batch:
            await batch.execute(INSERT, {"note": "lost"})
            await batch.execute("select pg_terminate_backend(pg_backend_pid())", {})
    assert await _pid(writer) != first
    await writer.close()
    assert await _notes(engine) == []
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_batches_at_once_beyond_what_is_held_use_the_pool_and_go_back_to_it(
    database_url, pg_schema
):  # fmt: skip
    engine = make_engine(
        database_url, pool_size=3, max_overflow=0,
        connect_args={"options": f"-csearch_path={pg_schema}"},
    )  # fmt: skip
    writer = Writer(engine, keep=1)
    try:

        async def slow() -> int:
            async with writer.batch() as batch:
                await batch.execute("select pg_sleep(0.2)", {})
                pid = await batch.execute(PID, {})
            return int((await pid.first() or (0,))[0])

        pids = await asyncio.gather(slow(), slow(), slow())
        assert len(set(pids)) == 3  # three connections at once
        assert engine.pool.checkedout() == 1  # one held, two back in the pool...
        # ...as the pool hands connections out: not in autocommit
        async with engine.connect() as one, engine.connect() as two:
            for connection in (one, two):
                driver = (await connection.get_raw_connection()).driver_connection
                assert driver.autocommit is False
            returned = {await one.scalar(text(PID)), await two.scalar(text(PID))}
            assert len(returned) == 2 and returned < set(pids)
        await writer.close()
        assert engine.pool.checkedout() == 0
        async with writer.batch() as batch:  # a closed writer holds nothing back
            await batch.execute(PID, {})
        assert engine.pool.checkedout() == 0
    finally:
        await engine.dispose()
    with pytest.raises(ValueError, match="keep"):
        Writer(engine, keep=0)
