"""Risk's Postgres, written and read back: what a restart rebuilds risk from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.risk.engine import Effects
from services.risk.flatten import FlattenJob, ProductProgress
from services.risk.state import EquityWatch, TradingState
from services.risk.store import RiskStore
from shared.db import upgrade
from shared.messages import TradingMode

START = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


async def test_the_latest_state_marks_and_flatten_progress_are_what_a_restart_loads(
    pg_url, pg_engine, closing
):  # fmt: skip
    upgrade(pg_url)
    store = RiskStore(pg_engine, TradingMode.PAPER)
    closing.push_async_callback(store.close)
    job = FlattenJob("flt-1", "ops", "drill", START, {"BTC-USD": ProductProgress()})
    paused = TradingState(False, "drill", "ops", START, "flt-1")
    await store.save(Effects(jobs={"flt-1": job}, state=paused,
                             watch=EquityWatch(Decimal("1000"), START.date(), Decimal("990"))),
                     START)  # fmt: skip

    job.exit_sent("BTC-USD", START)
    job.finished_at = START + timedelta(minutes=1)
    resumed = TradingState(True, "done", "ops", START + timedelta(minutes=1))
    await store.save(Effects(jobs={"flt-1": job}, state=resumed), START + timedelta(minutes=1))
    await store.save_watch(EquityWatch(Decimal("1010"), START.date(), Decimal("990")), START)

    restored = await store.load(START + timedelta(minutes=2), timedelta(days=1))
    assert restored.state == resumed
    assert restored.watch == EquityWatch(Decimal("1010"), START.date(), Decimal("990"))
    assert restored.jobs == []  # finished: not resumed
    stored = await store.flatten_job("flt-1")
    assert stored is not None
    assert stored.finished_at == job.finished_at
    assert stored.products["BTC-USD"].attempts == 1
