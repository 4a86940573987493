"""The rehearsal report: what a PAPER or LIVE run did, from what Postgres recorded.

Orders by status, fills by liquidity and the fees they paid, slippage as the cost
model predicts it next to what the fills show, realized PnL per product, and every
rejection with its reason (risk's verdicts, the venue's refusals of orders, and intents
that ended rejected). Built from rows already read (see ``store.read_report_data``),
rendered as plain text or as JSON. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.calibrate.measure import FillRecord, SlippageRow, combine_fills, summarize
from services.calibrate.pnl import ProductPnl, realized_pnl
from shared.messages import TradingMode
from shared.money import Rounding, quantize
from shared.slippage import CostModel

__all__ = ["LiquidityTotals", "Report", "ReportData", "build_report", "render_text"]

ZERO = Decimal(0)
CENT = Decimal("0.01")
BPS_PLACES = Decimal("0.01")


@dataclass(frozen=True)
class ReportData:
    """The rows a report is built from, all of one mode and window."""

    mode: TradingMode
    since: datetime
    until: datetime
    order_statuses: Mapping[str, int]
    fills: Sequence[FillRecord]  # oldest first
    decision_outcomes: Mapping[str, int]
    rejection_reasons: Mapping[str, int]  # of risk decisions REJECTED, each reason counted
    rejected_orders: Mapping[str, int]  # by the reason the order was rejected
    rejected_intents: Mapping[str, int]  # by the reason the intent ended rejected


@dataclass(frozen=True)
class LiquidityTotals:
    liquidity: str
    fills: int
    notional: Decimal
    fees: Decimal


@dataclass(frozen=True)
class Report:
    data: ReportData
    model_source: str
    liquidity: list[LiquidityTotals]
    slippage: list[SlippageRow]
    pnl: list[ProductPnl]
    unknown_products: list[str] = field(default_factory=list)

    @property
    def fees(self) -> Decimal:
        return sum((row.fees for row in self.liquidity), ZERO)

    def as_json(self) -> dict[str, Any]:
        data = self.data
        document: dict[str, Any] = _plain({
            "mode": data.mode.value, "since": data.since.isoformat(),
            "until": data.until.isoformat(), "orders": dict(data.order_statuses),
            "fills": {"count": len(data.fills),
                      "by_liquidity": [asdict(row) for row in self.liquidity]},
            "fees": self.fees, "slippage_model": self.model_source,
            "slippage": [asdict(row) for row in self.slippage],
            "pnl_method": "average cost, fees included", "pnl": [asdict(p) for p in self.pnl],
            "decisions": dict(data.decision_outcomes),
            "rejections": {"risk": dict(data.rejection_reasons),
                           "orders": dict(data.rejected_orders),
                           "intents": dict(data.rejected_intents)},
            "products_without_tier": self.unknown_products,
        })  # fmt: skip
        return document


def build_report(data: ReportData, model: CostModel, tiers: Mapping[str, int]) -> Report:
    executions, unknown = combine_fills(data.fills, tiers)
    return Report(
        data=data, model_source=model.source, liquidity=_by_liquidity(data.fills),
        slippage=summarize(executions, model, by_size=False), pnl=realized_pnl(data.fills),
        unknown_products=sorted(unknown),
    )  # fmt: skip


def _by_liquidity(fills: Sequence[FillRecord]) -> list[LiquidityTotals]:
    groups: dict[str, list[FillRecord]] = defaultdict(list)
    for fill in fills:
        groups[fill.liquidity.value].append(fill)
    return [
        LiquidityTotals(
            liquidity,
            len(group),
            _cents(sum((f.price * f.size for f in group), ZERO)),
            sum((f.fee for f in group), ZERO),
        )  # fmt: skip
        for liquidity, group in sorted(groups.items())
    ]


def _cents(value: Decimal) -> Decimal:
    return quantize(value, CENT, Rounding.HALF_EVEN)


def _plain(value: Any) -> Any:
    """JSON-ready: decimals as strings, enums as their values, containers walked."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return getattr(value, "value", value)


# --- plain text -----------------------------------------------------------------------


def render_text(report: Report) -> str:
    data = report.data
    window = f"{data.since.isoformat()} to {data.until.isoformat()}"
    lines = [
        f"Rehearsal report, {data.mode.value}, {window}",
        "",
        *_orders(data),
        *_fills(report),
        *_slippage(report),
        *_pnl(report.pnl),
        *_rejections(data),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _counts(title: str, counts: Mapping[str, int]) -> list[str]:
    total = sum(counts.values())
    lines = [f"{title}: {total}"]
    lines += [f"  {key:<28} {count:>6}" for key, count in Counter(counts).most_common()]
    return lines


def _orders(data: ReportData) -> list[str]:
    return [*_counts("Orders", dict(sorted(data.order_statuses.items()))), ""]


def _fills(report: Report) -> list[str]:
    lines = [f"Fills: {len(report.data.fills)}, fees paid {report.fees}"]
    lines += [
        f"  {row.liquidity:<6} {row.fills:>6} fills  notional {row.notional:>14}  fees {row.fees}"
        for row in report.liquidity
    ]
    return [*lines, ""]


def _slippage(report: Report) -> list[str]:
    lines = [
        "Slippage against arrival mid, bps (positive = worse for us); "
        f"model: {report.model_source}",
        f"  {'tier':<5} {'liquidity':<10} {'orders':>6} {'observed':>10} {'modeled':>10}",
    ]
    for row in report.slippage:
        modeled = "n/a" if row.modeled_bps is None else str(row.modeled_bps.quantize(BPS_PLACES))
        observed = row.observed_bps.quantize(BPS_PLACES)
        lines.append(
            f"  {row.tier:<5} {row.liquidity.value:<10} {row.count:>6} {observed:>10} {modeled:>10}"
        )
    lines.append("  (an order's fills combined; the model is the taker cost: makers show n/a)")
    if report.unknown_products:
        lines.append(f"  not in universe.yaml, not measured: {', '.join(report.unknown_products)}")
    return [*lines, ""]


def _pnl(rows: Sequence[ProductPnl]) -> list[str]:
    total = sum((row.realized for row in rows), ZERO)
    lines = [f"Realized PnL (average cost, fees included): {total}"]
    for row in rows:
        line = f"  {row.product_id:<10} realized {row.realized:>12}  open position {row.position}"
        if row.unmatched_sold:
            line += f"  ({row.unmatched_sold} sold beyond the window's buys: not counted)"
        lines.append(line)
    return [*lines, ""]


def _rejections(data: ReportData) -> list[str]:
    return [
        *_counts("Risk decisions", data.decision_outcomes),
        *_counts("Rejected by risk, by reason", data.rejection_reasons),
        *_counts("Orders rejected, by reason", data.rejected_orders),
        *_counts("Intents rejected, by reason", data.rejected_intents),
    ]
