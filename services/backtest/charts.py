"""The backtest's pictures and page: equity.png, report.html and summary.json.

Both CSVs are read as streams. A long run's equity log has millions of rows, so the chart
plots one point per stride of rows, and that point is the stride's lowest equity: plain
every-k-th sampling would step over a sharp dip and draw a smoother run than the one that
happened. The page lists the first trades and counts the rest.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from services.backtest.report import Summary

__all__ = [
    "MAX_POINTS",
    "MAX_TRADE_ROWS",
    "EquityPoint",
    "count_rows",
    "plot_equity",
    "read_equity",
    "render_html",
    "sample_equity",
    "sample_equity_csv",
    "write_charts",
]

MAX_POINTS = 5000
MAX_TRADE_ROWS = 500
PNG_NAME = "equity.png"
HTML_NAME = "report.html"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class EquityPoint:
    """One row of equity.csv."""

    time: datetime
    equity: Decimal
    drawdown_pct: Decimal
    exposed: bool


def read_equity(path: Path) -> Iterator[EquityPoint]:
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            yield EquityPoint(
                time=datetime.fromisoformat(row["time"]),
                equity=Decimal(row["equity"]),
                drawdown_pct=Decimal(row["drawdown_pct"]),
                exposed=row["exposed"] == "1",
            )


def count_rows(path: Path) -> int:
    """Data rows of a CSV with a header, counted without keeping them."""
    with path.open(newline="", encoding="utf-8") as file:
        return max(sum(1 for _ in csv.reader(file)) - 1, 0)


def sample_equity(
    points: Iterable[EquityPoint], total: int, max_points: int = MAX_POINTS
) -> list[EquityPoint]:
    """At most ``max_points`` + 1 points out of ``total``, in time order.

    Each stride of ``ceil(total / max_points)`` rows gives its lowest-equity row, carrying
    the stride's deepest drawdown (the peak may rise within a stride). The last row is
    added when it is not already the last sample, so the curve ends at the final equity.
    """
    stride = max(1, -(-total // max_points))
    sampled: list[EquityPoint] = []
    low: EquityPoint | None = None
    deepest = Decimal(0)
    last: EquityPoint | None = None
    for index, point in enumerate(points, start=1):
        if low is None or point.equity < low.equity:
            low = point
        deepest = max(deepest, point.drawdown_pct)
        last = point
        if index % stride == 0:
            sampled.append(replace(low, drawdown_pct=deepest))
            low, deepest = None, Decimal(0)
    if low is not None:
        sampled.append(replace(low, drawdown_pct=deepest))
    if last is not None and sampled[-1].time != last.time:
        sampled.append(last)
    return sampled


def sample_equity_csv(path: Path, max_points: int = MAX_POINTS) -> list[EquityPoint]:
    """Two streaming passes: one to count the rows, one to sample them."""
    return sample_equity(read_equity(path), count_rows(path), max_points)


def plot_equity(points: Sequence[EquityPoint], path: Path, *, title: str) -> None:
    """Equity above, drawdown (drawn below zero) underneath, on one time axis."""
    figure = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    equity_axes, drawdown_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    times = [point.time for point in points]
    equity_axes.plot(times, [float(point.equity) for point in points], color="tab:blue", lw=1)
    drawdowns = [-float(point.drawdown_pct) for point in points]
    drawdown_axes.fill_between(times, drawdowns, 0.0, color="tab:red", alpha=0.4, lw=0)
    equity_axes.set_title(title)
    equity_axes.set_ylabel("equity")
    drawdown_axes.set_ylabel("drawdown %")
    for axes in (equity_axes, drawdown_axes):
        axes.grid(alpha=0.3)
    if not points:
        centre = equity_axes.transAxes
        equity_axes.text(0.5, 0.5, "no equity samples", ha="center", transform=centre)
    figure.savefig(path, format="png")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _trades_section(trades_csv: Path) -> str:
    """The first MAX_TRADE_ROWS trades as a table; the rest only counted."""
    with trades_csv.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        shown = [row for _, row in zip(range(MAX_TRADE_ROWS), reader, strict=False)]
        more = sum(1 for _ in reader)
    if not shown:
        return "<h2>Trades</h2>\n<p>No closed trades.</p>"
    note = ""
    if more:
        total = len(shown) + more
        note = f"<p>Showing the first {len(shown):,} of {total:,} trades; trades.csv has all.</p>\n"
    return f"<h2>Trades</h2>\n{note}{_table(header, shown)}"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; }
"""


def render_html(title: str, summary: Summary, png: bytes, trades_csv: Path) -> str:
    """A self-contained page: no file beside it is needed to view it."""
    image = base64.b64encode(png).decode("ascii")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<h2>Summary</h2>\n"
        f"{_table(('Metric', 'Value'), summary.rows())}\n"
        f"<img alt='equity and drawdown' src='data:image/png;base64,{image}'>\n"
        f"{_trades_section(trades_csv)}\n</body>\n</html>\n"
    )


def write_charts(
    out_dir: Path, summary: Summary, equity_csv: Path, trades_csv: Path, *, title: str
) -> dict[str, Path]:
    """equity.png, report.html and summary.json in ``out_dir``, keyed by file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (PNG_NAME, HTML_NAME, SUMMARY_NAME)}
    plot_equity(sample_equity_csv(equity_csv), paths[PNG_NAME], title=title)
    paths[SUMMARY_NAME].write_text(json.dumps(summary.to_json(), indent=2) + "\n", "utf-8")
    page = render_html(title, summary, paths[PNG_NAME].read_bytes(), trades_csv)
    paths[HTML_NAME].write_text(page, encoding="utf-8")
    return paths
