"""The calibration job and the rehearsal report against a real, migrated Postgres.

Orders and fills are inserted as execution records them; the command line runs
in-process (``main(argv)``) with a fixed clock, and what it stored, exported and
printed is checked against numbers worked out by hand.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, select

from services.calibrate import main
from shared.clock import SimulatedClock
from shared.db import (
    ExecutionIntent,
    Fill,
    Order,
    RiskDecision,
    SlippageCalibration,
    make_engine,
    sqlalchemy_url,
    upgrade,
)
from shared.db.calibrations import latest_calibration
from shared.slippage import TierCosts, load_calibration

CONFIG = Path(__file__).resolve().parents[2] / "config"
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SINCE = datetime(2026, 6, 1, tzinfo=UTC)
MIDS = {"BTC-USD": Decimal(60_000), "ETH-USD": Decimal(3_000), "AVAX-USD": Decimal(35),
        "UNI-USD": Decimal(8)}  # fmt: skip
TYPICAL = {1: Decimal(50_000), 2: Decimal(10_000), 3: Decimal(2_000)}  # universe.yaml


@pytest.fixture
def db(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    upgrade(pg_url)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("CONFIG_DIR", str(CONFIG))
    monkeypatch.delenv("TRADING_MODE", raising=False)
    engine = create_engine(sqlalchemy_url(pg_url))
    yield engine
    engine.dispose()


def _order(coid: str, product: str, side: str, **row: Any) -> dict[str, Any]:
    return {
        "client_order_id": coid, "intent_id": f"i-{coid}", "product_id": product, "side": side,
        "order_type": "MARKET", "base_size": Decimal(1), "limit_price": None,
        "status": "FILLED", "reason": "", "mode": "LIVE", "created_at": NOW - timedelta(days=1),
        **row,  # every row has every key: a bulk insert takes its columns from the first
    }  # fmt: skip


def _fill(coid: str, trade: str, product: str, side: str, price: Decimal, size: Decimal,
          **row: Any) -> dict[str, Any]:  # fmt: skip
    at = row.pop("at", NOW - timedelta(days=1))
    return {
        "venue": "coinbase", "trade_id": trade, "client_order_id": coid, "product_id": product,
        "side": side, "price": price, "size": size, "fee": Decimal("0.10"),
        "liquidity": "TAKER", "arrival_mid": MIDS[product], "arrival_time": at,
        "filled_at": at, "mode": "LIVE", **row,
    }  # fmt: skip


Rows = list[dict[str, Any]]


def _taker_orders(product: str, tier: int, base: float, impact: float, count: int,
                  seed: int, **row: Any) -> tuple[Rows, Rows]:  # fmt: skip
    """``count`` orders from the model plus 0.5 bp of noise; every 3rd filled in two parts."""
    rng, mid = random.Random(seed), MIDS[product]
    orders, fills = [], []
    for i in range(count):
        ratio = 10 ** rng.uniform(-2, 0.5)
        bps = Decimal(repr(round(base + impact * ratio**0.5 + rng.gauss(0, 0.5), 4)))
        size = (TYPICAL[tier] * Decimal(repr(round(ratio, 6))) / mid).quantize(Decimal("1e-8"))
        side = "BUY" if i % 2 else "SELL"
        price = mid * (1 + bps / 10_000) if side == "BUY" else mid * (1 - bps / 10_000)
        coid, at = f"{product}-{seed}-{i}", SINCE + timedelta(hours=i)
        orders.append(_order(coid, product, side, mode=row.get("mode", "LIVE")))
        parts = [size] if i % 3 else [size / 2, size - size / 2]
        fills += [_fill(coid, f"{coid}-{n}", product, side, price, part, at=at, **row)
                  for n, part in enumerate(parts)]  # fmt: skip
    return orders, fills


def _insert(engine: Engine, orders: list[dict[str, Any]], fills: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        if orders:
            connection.execute(insert(Order), orders)
        if fills:
            connection.execute(insert(Fill), fills)


def _calibration_data(engine: Engine) -> None:
    batches = [
        _taker_orders("BTC-USD", 1, 12, 7, 25, seed=1),
        _taker_orders("ETH-USD", 1, 12, 7, 25, seed=2),
        _taker_orders("AVAX-USD", 2, 30, 15, 40, seed=3),
        _taker_orders("UNI-USD", 3, 60, 20, 5, seed=4),  # too few: skipped
        _taker_orders("BTC-USD", 1, 500, 0, 40, seed=5, mode="PAPER"),  # another mode: ignored
        _taker_orders("BTC-USD", 1, -3, 0, 40, seed=6, liquidity="MAKER"),  # makers: not fitted
    ]
    for orders, fills in batches:
        _insert(engine, orders, fills)


def _stored(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(
            select(SlippageCalibration).order_by(SlippageCalibration.tier)))  # fmt: skip


def _latest(pg_url: str, mode: str) -> dict[int, TierCosts]:
    async def read() -> dict[int, TierCosts]:
        database = make_engine(pg_url)
        try:
            async with database.connect() as connection:
                return await latest_calibration(connection, mode)
        finally:
            await database.dispose()

    return asyncio.run(read())


def test_calibration_fits_stores_and_exports_each_tier_it_can(db, pg_url, tmp_path, capsys):  # type: ignore[no-untyped-def]
    _calibration_data(db)
    export = tmp_path / "calibration" / "slippage.json"
    argv = ["--mode", "LIVE", "--since", SINCE.isoformat(), "--export", str(export)]
    assert main(argv, clock=SimulatedClock(NOW)) == 0
    out = capsys.readouterr().out
    assert "tier 3: 5 taker orders, at least 30 needed" in out
    assert "Maker orders are measured but not fitted" in out
    assert "Stored 2 calibration rows" in out

    rows = _stored(db)
    assert [(r.tier, r.mode, r.sample_size, r.product_id) for r in rows] == [
        (1, "LIVE", 40, None), (2, "LIVE", 32, None),
    ]  # fmt: skip
    assert {(r.window_start, r.window_end, r.created_at) for r in rows} == {(SINCE, NOW, NOW)}
    truth = {1: (12, 7), 2: (30, 15)}
    for row in rows:  # 0.5 bp of noise: within 1 bp
        assert abs(row.base_slippage_bps - truth[row.tier][0]) <= 1
        assert abs(row.impact_coefficient - truth[row.tier][1]) <= 1
        assert row.typical_notional_usd == TYPICAL[row.tier]
        assert row.fit_error_bps < row.config_error_bps

    stored = {r.tier: TierCosts(r.base_slippage_bps, r.impact_coefficient,
                                r.typical_notional_usd) for r in rows}  # fmt: skip
    assert load_calibration(export) == stored
    document = json.loads(export.read_text())
    assert (document["mode"], document["window"]["start"]) == ("LIVE", SINCE.isoformat())
    assert _latest(pg_url, "LIVE") == stored
    assert _latest(pg_url, "PAPER") == {}


def test_the_latest_calibration_is_each_tiers_newest_fit(db, pg_url, tmp_path):  # type: ignore[no-untyped-def]
    _calibration_data(db)
    argv = ["--mode", "live", "--export", str(tmp_path / "s.json")]
    assert main(argv, clock=SimulatedClock(NOW)) == 0
    older = {
        "product_id": None, "base_slippage_bps": Decimal(99), "impact_coefficient": Decimal(1),
        "typical_notional_usd": Decimal(2_000), "sample_size": 30, "window_start": SINCE,
        "window_end": SINCE, "mode": "LIVE", "created_at": NOW - timedelta(days=3),
    }  # fmt: skip
    with db.begin() as connection:
        connection.execute(
            insert(SlippageCalibration), [{**older, "tier": 1}, {**older, "tier": 3}]
        )
    latest = _latest(pg_url, "LIVE")
    assert sorted(latest) == [1, 2, 3]
    assert latest[1].base_slippage_bps != 99  # the run's, newer
    assert latest[3] == TierCosts(Decimal(99), Decimal(1), Decimal(2_000))  # only fit of tier 3


def test_no_tier_to_fit_exits_non_zero_and_stores_nothing(db, tmp_path, capsys):  # type: ignore[no-untyped-def]
    _insert(db, *_taker_orders("BTC-USD", 1, 12, 7, 10, seed=1))
    export = tmp_path / "slippage.json"
    assert main(["--mode", "LIVE", "--export", str(export)], clock=SimulatedClock(NOW)) == 1
    captured = capsys.readouterr()
    assert "tier 1: 10 taker orders, at least 30 needed" in captured.out
    assert "no tier could be fitted" in captured.err
    assert _stored(db) == [] and not export.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday"], "not a duration (30m, 24h, 7d, 2w) nor an ISO-8601 time"),
        (["--mode", "BACKTEST"], "the mode is LIVE or PAPER"),
        (["report", "--since", "2026-07-01T00:00:00Z"], "is not in the past"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(db, capsys, argv, message):  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        main(argv, clock=SimulatedClock(NOW))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


# --- the rehearsal report -------------------------------------------------------------

DAY = NOW - timedelta(hours=6)


def _rehearsal(engine: Engine) -> None:
    """A small PAPER run; its expected figures are worked out in the test below."""
    paper = {"mode": "PAPER", "created_at": DAY}
    orders = [
        _order("o1", "ETH-USD", "BUY", **paper), _order("o2", "ETH-USD", "SELL", **paper),
        _order("o3", "BTC-USD", "BUY", order_type="LIMIT", limit_price=Decimal(59_990), **paper),
        _order("o4", "ETH-USD", "BUY", status="REJECTED", reason="INSUFFICIENT_FUND", **paper),
        _order("o5", "ETH-USD", "BUY", status="CANCELLED", **paper),
        _order("o6", "ETH-USD", "BUY", mode="PAPER", created_at=NOW - timedelta(days=2)),  # before
        _order("o7", "ETH-USD", "BUY", created_at=DAY),  # LIVE
    ]  # fmt: skip
    fill = {"mode": "PAPER", "at": DAY}
    fills = [
        _fill("o1", "t1", "ETH-USD", "BUY", Decimal(3003), Decimal(1), fee=Decimal("3.60"), **fill),
        _fill("o2", "t2", "ETH-USD", "SELL", Decimal(3094), Decimal(1), fee=Decimal("3.71"),
              arrival_mid=Decimal(3100), **{**fill, "at": DAY + timedelta(minutes=5)}),
        _fill("o3", "t3", "BTC-USD", "BUY", Decimal(59_990), Decimal("0.01"), fee=Decimal("0.36"),
              liquidity="MAKER", **fill),
        _fill("o7", "t7", "ETH-USD", "BUY", Decimal(3100), Decimal(1), at=DAY),  # LIVE
    ]  # fmt: skip
    _insert(engine, orders, fills)
    decision = {"strategy": "ema", "product_id": "ETH-USD", "action": "ENTRY",
                "requested_quote_size": Decimal(100), "approved_quote_size": Decimal(0),
                "decided_at": DAY, "mode": "PAPER"}  # fmt: skip
    intent = {"command": {}, "origin_ts": 0, "product_id": "ETH-USD", "started_at": DAY,
              "mode": "PAPER"}  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(RiskDecision), [
            {**decision, "proposal_id": "p1", "outcome": "REJECTED", "reasons": ["stale_proposal"]},
            {**decision, "proposal_id": "p2", "outcome": "REJECTED",
             "reasons": ["asset_cap", "stale_proposal"]},
            {**decision, "proposal_id": "p3", "outcome": "APPROVED", "reasons": [],
             "approved_quote_size": Decimal(100)},
        ])  # fmt: skip
        connection.execute(insert(ExecutionIntent), [
            {**intent, "intent_id": "i-o4", "status": "REJECTED", "reason": "INSUFFICIENT_FUND"},
            {**intent, "intent_id": "i-o1", "status": "FILLED", "reason": ""},
        ])  # fmt: skip


def test_the_report_sums_a_known_rehearsal(db, capsys):  # type: ignore[no-untyped-def]
    _rehearsal(db)
    assert main(["report", "--since", "24h", "--mode", "PAPER", "--json"],
                clock=SimulatedClock(NOW)) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["orders"] == {"FILLED": 3, "REJECTED": 1, "CANCELLED": 1}
    assert report["fills"]["count"] == 3
    assert report["fills"]["by_liquidity"] == [
        {"liquidity": "MAKER", "fills": 1, "notional": "599.90", "fees": "0.36"},
        {"liquidity": "TAKER", "fills": 2, "notional": "6097.00", "fees": "7.31"},
    ]
    assert report["fees"] == "7.67"
    # taker: 10 bps on the buy, (3100 - 3094) / 3100 = 19.35 bps on the sell; config model:
    # 10 + 5 * sqrt(q / 50000) for q = 3000 and 3100, i.e. 11.22 and 11.24
    taker, maker = (next(r for r in report["slippage"] if r["liquidity"] == side)
                    for side in ("TAKER", "MAKER"))  # fmt: skip
    assert (taker["tier"], taker["count"], report["slippage_model"]) == (1, 2, "config")
    assert Decimal(taker["observed_bps"]).quantize(Decimal("0.01")) == Decimal("14.68")
    assert Decimal(taker["modeled_bps"]).quantize(Decimal("0.01")) == Decimal("11.23")
    assert (Decimal(maker["observed_bps"]).quantize(Decimal("0.01")), maker["modeled_bps"]) == (
        Decimal("-1.67"), None)  # fmt: skip
    # ETH: bought at 3003 + 3.60 fee, sold at 3094 - 3.71 fee
    pnl = {row["product_id"]: row for row in report["pnl"]}
    assert (pnl["ETH-USD"]["realized"], pnl["BTC-USD"]["realized"]) == ("83.69", "0.00")
    assert pnl["BTC-USD"]["position"] == "0.01"
    assert report["decisions"] == {"REJECTED": 2, "APPROVED": 1}
    assert report["rejections"] == {
        "risk": {"stale_proposal": 2, "asset_cap": 1},
        "orders": {"INSUFFICIENT_FUND": 1},
        "intents": {"INSUFFICIENT_FUND": 1},
    }


def test_the_text_report_prices_slippage_with_the_latest_calibration(db, capsys):  # type: ignore[no-untyped-def]
    _rehearsal(db)
    with db.begin() as connection:
        connection.execute(insert(SlippageCalibration), {
            "tier": 1, "base_slippage_bps": Decimal(20), "impact_coefficient": Decimal(0),
            "typical_notional_usd": Decimal(50_000), "sample_size": 40, "window_start": SINCE,
            "window_end": SINCE, "mode": "PAPER", "created_at": SINCE,
        })  # fmt: skip
    assert main(["report", "--mode", "PAPER"], clock=SimulatedClock(NOW)) == 0
    text = capsys.readouterr().out
    assert "Orders: 5" in text and "Fills: 3, fees paid 7.67" in text
    assert "model: calibration" in text
    assert "  1     TAKER           2      14.68      20.00" in text
    assert "  1     MAKER           1      -1.67        n/a" in text
    assert "Realized PnL (average cost, fees included): 83.69" in text
    assert "INSUFFICIENT_FUND" in text and "stale_proposal" in text
