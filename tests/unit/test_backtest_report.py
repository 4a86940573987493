"""The backtest's statistics, logs and charts against small paths worked out by hand."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from services.backtest.charts import (
    MAX_POINTS,
    EquityPoint,
    read_equity,
    sample_equity,
    sample_equity_csv,
    write_charts,
)
from services.backtest.report import (
    TRADE_COLUMNS,
    ClosedTrade,
    EquityLog,
    RunStats,
    Summary,
    TradeLog,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(initial: str, path: list[tuple[timedelta, str]], exposed: bool = False) -> Summary:
    stats = RunStats(Decimal(initial))
    for offset, equity in path:
        stats.observe(T0 + offset, Decimal(equity), exposed)
    return stats.summary()


def trade(pnl: str, *, reason: str = "stop_loss", fees: str = "0", slip: str = "0") -> ClosedTrade:
    return ClosedTrade(
        product_id="BTC-USD",
        strategy="ema_cross",
        entry_time=T0,
        exit_time=T0 + HOUR,
        size=Decimal("0.5"),
        entry_price=Decimal("40000.00"),
        exit_price=Decimal("40100.00"),
        fees=Decimal(fees),
        slippage_cost=Decimal(slip),
        pnl=Decimal(pnl),
        exit_reason=reason,
    )


def with_trades(pnls: list[str]) -> Summary:
    stats = RunStats(Decimal(100))
    stats.observe(T0, Decimal(100), False)
    for pnl in pnls:
        stats.record_trade(trade(pnl))
    return stats.summary()


# --- drawdown, return, CAGR -------------------------------------------------------------


def test_max_drawdown_is_the_largest_fall_from_a_running_peak():
    # 100 -> 120 -> 90 (25 % under 120) -> 130 -> 117 (10 % under 130) -> 125
    path = [(i * HOUR, e) for i, e in enumerate(["100", "120", "90", "130", "117", "125"])]
    summary = run("100", path)
    assert summary.max_drawdown_pct == Decimal("25.00")
    assert summary.total_return_pct == Decimal("25.00")
    assert summary.final_equity == Decimal(125)
    assert (summary.start, summary.end) == (T0, T0 + 5 * HOUR)


def test_a_fall_below_the_initial_equity_is_a_drawdown():
    summary = run("100", [(timedelta(0), "80"), (HOUR, "95")])
    assert summary.max_drawdown_pct == Decimal("20.00")
    assert summary.total_return_pct == Decimal("-5.00")


def test_current_drawdown_follows_the_peak():
    stats = RunStats(Decimal(200))
    stats.observe(T0, Decimal(150), False)
    assert stats.drawdown_pct == Decimal("25.00")
    stats.observe(T0 + HOUR, Decimal(250), False)
    assert stats.drawdown_pct == Decimal("0.00")
    stats.observe(T0 + 2 * HOUR, Decimal(240), False)
    assert stats.drawdown_pct == Decimal("4.00")


def test_cagr_over_exactly_one_year_is_the_total_return():
    summary = run("1000", [(timedelta(0), "1000"), (365 * DAY, "1100")])
    assert summary.cagr_pct == Decimal("10.00")


def test_cagr_over_two_years_is_the_yearly_rate():
    # 1.21 = 1.1 ** 2
    summary = run("1000", [(timedelta(0), "1000"), (730 * DAY, "1210")])
    assert summary.total_return_pct == Decimal("21.00")
    assert summary.cagr_pct == Decimal("10.00")


def test_no_cagr_under_a_day():
    summary = run("1000", [(timedelta(0), "1000"), (DAY - timedelta(seconds=1), "1100")])
    assert summary.cagr_pct is None


# --- Sharpe and Sortino -----------------------------------------------------------------


def test_sharpe_and_sortino_from_daily_closes():
    # Daily closes 100, 110, 99, 108.9: returns r = +0.1, -0.1, +0.1 (intraday samples
    # before each close must not count).
    # mean = 0.1/3; std (ddof=1) = sqrt(((0.2/3)^2 * 2 + (0.4/3)^2) / 2) = 0.115470
    # sharpe = mean / std * sqrt(365) = 0.288675 * 19.104973 = 5.515134
    # downside = sqrt((0 + 0.01 + 0) / 3) = 0.057735
    # sortino = mean / downside * sqrt(365) = 0.577350 * 19.104973 = 11.030268
    path = [
        (timedelta(hours=6), "104"),
        (timedelta(hours=23), "100"),
        (DAY + timedelta(hours=1), "130"),
        (DAY + timedelta(hours=22), "110"),
        (2 * DAY, "80"),
        (2 * DAY + timedelta(hours=23, minutes=59), "99"),
        (3 * DAY + timedelta(hours=12), "108.9"),
    ]
    summary = run("100", path)
    assert summary.sharpe == pytest.approx(5.515134, abs=1e-5)
    assert summary.sortino == pytest.approx(11.030268, abs=1e-5)
    mean, std = 0.1 / 3, math.sqrt(((0.2 / 3) ** 2 * 2 + (0.4 / 3) ** 2) / 2)
    assert summary.sharpe == pytest.approx(mean / std * math.sqrt(365))


def test_sharpe_needs_two_daily_returns():
    one_return = run("100", [(timedelta(0), "100"), (DAY, "101")])
    assert one_return.sharpe is None
    assert one_return.sortino is None
    two_returns = run("100", [(timedelta(0), "100"), (DAY, "101"), (2 * DAY, "100")])
    assert two_returns.sharpe is not None
    assert two_returns.sortino is not None


def test_no_sortino_without_a_losing_day():
    summary = run("100", [(timedelta(0), "100"), (DAY, "110"), (2 * DAY, "125")])
    assert summary.sharpe is not None
    assert summary.sortino is None


def test_summary_mid_run_does_not_close_the_day_twice():
    stats = RunStats(Decimal(100))
    stats.observe(T0, Decimal(100), False)
    stats.observe(T0 + DAY, Decimal(110), False)
    stats.summary()
    stats.observe(T0 + 2 * DAY, Decimal(99), False)
    stats.observe(T0 + 3 * DAY, Decimal("108.9"), False)
    assert stats.summary().sharpe == pytest.approx(5.515134, abs=1e-5)


# --- exposure, trades -------------------------------------------------------------------


def test_exposure_weights_each_state_by_the_time_until_the_next_sample():
    # exposed [0h, 1h), flat [1h, 4h), exposed [4h, 5h); the last sample's state has no time.
    stats = RunStats(Decimal(100))
    for hours, exposed in [(0, True), (1, False), (4, True), (5, False)]:
        stats.observe(T0 + hours * HOUR, Decimal(100), exposed)
    assert stats.summary().exposure_pct == Decimal("40.00")


def test_exposure_ignores_the_last_samples_state():
    stats = RunStats(Decimal(100))
    stats.observe(T0, Decimal(100), False)
    stats.observe(T0 + HOUR, Decimal(100), True)
    assert stats.summary().exposure_pct == Decimal("0.00")


def test_profit_factor_and_win_rate():
    # gross profit 30 + 20 = 50, gross loss 10 + 20 = 30; a flat trade is not a win
    summary = with_trades(["30", "-10", "20", "-20", "0"])
    assert summary.trades == 5
    assert summary.win_rate_pct == Decimal("40.00")
    assert summary.profit_factor == Decimal("1.67")


def test_profit_factor_needs_a_losing_trade_and_win_rate_a_trade():
    assert with_trades(["5", "7"]).profit_factor is None
    assert with_trades(["5", "7"]).win_rate_pct == Decimal("100.00")
    assert with_trades([]).win_rate_pct is None
    assert with_trades([]).profit_factor is None


def test_costs_are_summed_over_trades():
    stats = RunStats(Decimal(100))
    stats.observe(T0, Decimal(100), False)
    stats.record_trade(trade("1", fees="0.40", slip="0.10"))
    stats.record_trade(trade("-1", fees="0.60", slip="0.05"))
    summary = stats.summary()
    assert summary.fees_paid == Decimal("1.00")
    assert summary.slippage_cost == Decimal("0.15")


def test_time_must_not_go_backwards_and_must_be_aware():
    stats = RunStats(Decimal(100))
    stats.observe(T0, Decimal(100), False)
    stats.observe(T0 + 2 * HOUR, Decimal(100), False)
    stats.observe(T0 + 2 * HOUR, Decimal(101), False)  # the same time again is fine
    with pytest.raises(ValueError, match="backwards"):
        stats.observe(T0 + HOUR, Decimal(100), False)
    with pytest.raises(ValueError, match="timezone"):
        stats.observe(datetime(2024, 1, 2), Decimal(100), False)  # noqa: DTZ001


# --- summary output ---------------------------------------------------------------------


def test_summary_json_and_lines():
    summary = replace(
        run("100", [(timedelta(0), "100"), (2 * HOUR, "90")]), no_cost_return_pct=Decimal("-8.50")
    )
    data = summary.to_json()
    assert data["start"] == "2024-01-01T00:00:00+00:00"
    assert data["total_return_pct"] == "-10.00"
    assert data["no_cost_return_pct"] == "-8.50"
    assert data["cagr_pct"] is None
    assert data["trades"] == 0
    json.dumps(data)
    text = "\n".join(summary.lines())
    assert "Total return" in text and "-10.00%" in text
    assert "Return without costs" in text and "-8.50%" in text
    assert len(summary.lines()) == len(summary.rows())


# --- CSV logs ---------------------------------------------------------------------------


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_trade_log_writes_a_header_and_one_row_per_trade(tmp_path):
    path = tmp_path / "trades.csv"
    with TradeLog(path) as log:
        log.write(trade("12.5", reason="ema 12 crossed below ema 26", fees="0.30", slip="0.02"))
        log.write(trade("-3", reason="stop_loss"))
    rows = read_csv(path)
    assert rows[0] == list(TRADE_COLUMNS)
    assert rows[0][0] == "product_id" and rows[0][-1] == "exit_reason"
    assert rows[1] == [
        "BTC-USD",
        "ema_cross",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T01:00:00+00:00",
        "0.5",
        "40000.00",
        "40100.00",
        "0.30",
        "0.02",
        "12.5",
        "ema 12 crossed below ema 26",
    ]
    assert rows[2][-2:] == ["-3", "stop_loss"]
    assert len(rows) == 3


def test_equity_log_rows_read_back(tmp_path):
    path = tmp_path / "equity.csv"
    with EquityLog(path) as log:
        log.write(T0, Decimal("1000.00"), Decimal("0.00"), False)
        log.write(T0 + HOUR, Decimal("950.00"), Decimal("5.00"), True)
    assert read_csv(path) == [
        ["time", "equity", "drawdown_pct", "exposed"],
        ["2024-01-01T00:00:00+00:00", "1000.00", "0.00", "0"],
        ["2024-01-01T01:00:00+00:00", "950.00", "5.00", "1"],
    ]
    points = list(read_equity(path))
    assert points[1] == EquityPoint(T0 + HOUR, Decimal("950.00"), Decimal("5.00"), True)


# --- sampling and charts ----------------------------------------------------------------


def write_equity(path: Path, equities: list[Decimal]) -> None:
    stats = RunStats(equities[0])
    with EquityLog(path) as log:
        for minute, equity in enumerate(equities):
            time = T0 + timedelta(minutes=minute)
            stats.observe(time, equity, minute % 2 == 0)
            log.write(time, equity, stats.drawdown_pct, minute % 2 == 0)


def test_stride_sampling_keeps_a_one_row_dip(tmp_path):
    # 50,000 rows on a gentle rise; one row at 31,337 falls to 400 (a 60 % drawdown).
    equities = [Decimal(1000) + Decimal(i) / 100 for i in range(50_000)]
    equities[31_337] = Decimal(400)
    path = tmp_path / "equity.csv"
    write_equity(path, equities)
    sampled = sample_equity_csv(path)
    assert len(sampled) <= MAX_POINTS + 1
    assert min(point.equity for point in sampled) == Decimal(400)
    assert max(point.drawdown_pct for point in sampled) > Decimal(59)
    assert sampled[-1].equity == equities[-1]
    assert [p.time for p in sampled] == sorted(p.time for p in sampled)


def test_stride_sampling_takes_each_strides_lowest_row():
    points = [
        EquityPoint(T0 + i * HOUR, Decimal(e), Decimal(d), False)
        for i, (e, d) in enumerate([(10, 0), (8, 20), (9, 10), (12, 0), (30, 0), (15, 50), (31, 0)])
    ]
    # stride 3; in the second stride the peak rises to 30, so the deepest drawdown (50 %
    # at 15) is not at the lowest equity (12): the point carries both.
    sampled = sample_equity(points, total=7, max_points=3)
    assert [(p.time, p.equity, p.drawdown_pct) for p in sampled] == [
        (T0 + HOUR, Decimal(8), Decimal(20)),
        (T0 + 3 * HOUR, Decimal(12), Decimal(50)),
        (T0 + 6 * HOUR, Decimal(31), Decimal(0)),
    ]
    assert sample_equity(points, total=7, max_points=10) == points
    assert sample_equity([], total=0) == []


def test_write_charts_makes_a_png_a_page_and_summary_json(tmp_path):
    equity_csv, trades_csv = tmp_path / "equity.csv", tmp_path / "trades.csv"
    write_equity(equity_csv, [Decimal(1000 + (i % 97) - i // 50) for i in range(3000)])
    with TradeLog(trades_csv) as log:
        log.write(trade("4.2", reason="ema 12 < ema 26"))
        for _ in range(501):
            log.write(trade("-1.5"))
    summary = replace(
        run("1000", [(timedelta(0), "1000"), (HOUR, "850"), (2 * HOUR, "1234.56")]),
        no_cost_return_pct=Decimal("25.10"),
    )
    paths = write_charts(tmp_path / "out", summary, equity_csv, trades_csv, title="BTC <test>")

    png = paths["equity.png"].read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000
    page = paths["report.html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert "BTC &lt;test&gt;" in page
    for value in ("23.46%", "15.00%", "25.10%", "1234.56"):
        assert value in page
    assert "ema 12 &lt; ema 26" in page
    assert "first 500 of 502 trades" in page
    assert page.count("<td>BTC-USD</td>") == 500
    assert json.loads(paths["summary.json"].read_text(encoding="utf-8")) == summary.to_json()


def test_write_charts_with_no_trades_and_no_samples(tmp_path):
    equity_csv, trades_csv = tmp_path / "equity.csv", tmp_path / "trades.csv"
    EquityLog(equity_csv).close()
    TradeLog(trades_csv).close()
    summary = run("1000", [(timedelta(0), "1000")])
    paths = write_charts(tmp_path, summary, equity_csv, trades_csv, title="empty")
    assert paths["equity.png"].read_bytes().startswith(PNG_SIGNATURE)
    page = paths["report.html"].read_text(encoding="utf-8")
    assert "No closed trades." in page
    assert "first 500" not in page


def test_days_are_utc_days_whatever_the_offset():
    # 01:00 on 2 January at +02:00 is 23:00 UTC on 1 January, so it closes 1 January:
    # closes 120, 108, 118.8 give returns -10 %, +10 % and a Sharpe of exactly 0. Read as
    # local days, the closes would be 100, 108, 118.8: +8 %, +10 %.
    plus_two = timezone(timedelta(hours=2))
    stats = RunStats(Decimal(100))
    stats.observe(T0, Decimal(100), False)
    stats.observe(datetime(2024, 1, 2, 1, tzinfo=plus_two), Decimal(120), False)
    stats.observe(T0 + DAY, Decimal(108), False)
    stats.observe(T0 + 2 * DAY, Decimal("118.8"), False)
    assert stats.summary().sharpe == pytest.approx(0.0, abs=1e-9)
