"""The backtest's numbers: closed trades, streaming run statistics, the summary, CSV logs.

A run over years of one-minute candles observes millions of equity samples, so nothing
here keeps them: ``RunStats`` folds each sample into running values (peak, drawdown,
daily-return moments, exposed time) and the logs write each row as it arrives.
Percentages are quantized to hundredths; Sharpe and Sortino are floats because they are
statistics, not money.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from shared.money import Rounding, quantize

__all__ = [
    "EQUITY_COLUMNS",
    "TRADE_COLUMNS",
    "ClosedTrade",
    "EquityLog",
    "RunStats",
    "Summary",
    "TradeLog",
    "cagr_pct",
    "return_pct",
]

ZERO = Decimal(0)
HUNDRED = Decimal(100)
HUNDREDTH = Decimal("0.01")
DAY = timedelta(days=1)
YEAR = timedelta(days=365)
MICROSECOND = timedelta(microseconds=1)
ANNUALIZATION = math.sqrt(365)  # crypto trades every day of the year
NOT_AVAILABLE = "n/a"


@dataclass(frozen=True)
class ClosedTrade:
    """One round trip of one product: from the first buy while flat to flat again."""

    product_id: str
    strategy: str  # the strategy whose entry opened it ("" if unknown)
    entry_time: datetime  # UTC-aware
    exit_time: datetime
    size: Decimal  # base bought in total
    entry_price: Decimal  # average buy price
    exit_price: Decimal  # average sell price
    fees: Decimal  # all fees of the trade's fills
    slippage_cost: Decimal  # sum over fills of (fill vs arrival mid, worse for us positive) * size
    pnl: Decimal  # net: sells - buys - fees
    exit_reason: str  # e.g. "ema 12 crossed below ema 26", "stop_loss", "end_of_data"


def _hundredths(value: Decimal) -> Decimal:
    return quantize(value, HUNDREDTH, Rounding.HALF_EVEN)


def return_pct(initial: Decimal, final: Decimal) -> Decimal:
    """Total return in percent; public so a cost-free rerun is rounded the same way."""
    return _hundredths((final - initial) * HUNDRED / initial)


def cagr_pct(initial: Decimal, final: Decimal, span: timedelta) -> Decimal | None:
    """Compound annual growth; None under a day, where annualizing would be noise."""
    if span < DAY:
        return None
    if final <= 0:
        return _hundredths(-HUNDRED)
    years = Decimal(span // MICROSECOND) / Decimal(YEAR // MICROSECOND)
    growth = (final / initial) ** (1 / years)
    return _hundredths((growth - 1) * HUNDRED)


def _json_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _pct_text(value: Decimal | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value}%"


def _ratio_text(value: float | Decimal | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class Summary:
    """The run in a few numbers, for stdout, summary.json and the HTML page."""

    start: datetime
    end: datetime
    initial_equity: Decimal
    final_equity: Decimal
    total_return_pct: Decimal
    cagr_pct: Decimal | None
    sharpe: float | None
    sortino: float | None
    max_drawdown_pct: Decimal
    trades: int
    win_rate_pct: Decimal | None
    profit_factor: Decimal | None
    exposure_pct: Decimal
    fees_paid: Decimal
    slippage_cost: Decimal
    no_cost_return_pct: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {field.name: _json_value(getattr(self, field.name)) for field in fields(self)}

    def rows(self) -> list[tuple[str, str]]:
        """Label and display text per metric; shared by ``lines`` and the HTML table."""
        return [
            ("Period", f"{self.start.isoformat()} to {self.end.isoformat()}"),
            ("Initial equity", str(self.initial_equity)),
            ("Final equity", str(self.final_equity)),
            ("Total return", _pct_text(self.total_return_pct)),
            ("Return without costs", _pct_text(self.no_cost_return_pct)),
            ("CAGR", _pct_text(self.cagr_pct)),
            ("Sharpe", _ratio_text(self.sharpe)),
            ("Sortino", _ratio_text(self.sortino)),
            ("Max drawdown", _pct_text(self.max_drawdown_pct)),
            ("Trades", str(self.trades)),
            ("Win rate", _pct_text(self.win_rate_pct)),
            ("Profit factor", _ratio_text(self.profit_factor)),
            ("Exposure", _pct_text(self.exposure_pct)),
            ("Fees paid", str(self.fees_paid)),
            ("Slippage cost", str(self.slippage_cost)),
        ]

    def lines(self) -> list[str]:
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        return [f"{label:<{width}}  {value}" for label, value in rows]


@dataclass
class _DailyMoments:
    """Welford's running mean and variance of daily returns, plus the downside squares."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    downside_squares: float = 0.0

    def add(self, daily_return: float) -> None:
        self.count += 1
        delta = daily_return - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (daily_return - self.mean)
        self.downside_squares += min(daily_return, 0.0) ** 2

    def sharpe(self) -> float | None:
        if self.count < 2 or self.m2 <= 0:
            return None
        return self.mean / math.sqrt(self.m2 / (self.count - 1)) * ANNUALIZATION

    def sortino(self) -> float | None:
        if self.count < 2 or self.downside_squares <= 0:
            return None
        return self.mean / math.sqrt(self.downside_squares / self.count) * ANNUALIZATION


def _utc_day(time: datetime) -> date:
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError(f"equity times must be timezone-aware, got {time!r}")
    return time.astimezone(UTC).date()


class RunStats:
    """Streaming statistics: O(1) memory however long the history."""

    def __init__(self, initial_equity: Decimal) -> None:
        if initial_equity <= 0:
            raise ValueError(f"initial equity must be positive, got {initial_equity}")
        self._initial = initial_equity
        self._peak = initial_equity  # a fall below the starting equity is a drawdown too
        self._drawdown = ZERO  # current fall from the peak, as a fraction of the peak
        self._max_drawdown = ZERO
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._equity = initial_equity
        self._exposed = False
        self._exposed_time = timedelta(0)
        self._day: date | None = None
        self._previous_close: Decimal | None = None
        self._daily = _DailyMoments()
        self._trades = 0
        self._wins = 0
        self._gross_profit = ZERO
        self._gross_loss = ZERO
        self._fees = ZERO
        self._slippage = ZERO

    @property
    def drawdown_pct(self) -> Decimal:
        """The current fall from the running peak, for each row of the equity log."""
        return _hundredths(self._drawdown * HUNDRED)

    def observe(self, time: datetime, equity: Decimal, exposed: bool) -> None:
        day = _utc_day(time)
        if self._last is None:
            self._first = time
        elif time < self._last:
            raise ValueError(f"equity time went backwards: {time} after {self._last}")
        else:
            if self._exposed:  # the earlier sample's state holds until this one
                self._exposed_time += time - self._last
            if day != self._day:
                self._close_day()
        self._day = day
        self._last = time
        self._equity = equity
        self._exposed = exposed
        self._track_drawdown(equity)

    def _close_day(self) -> None:
        daily_return = self._pending_return()
        if daily_return is not None:
            self._daily.add(daily_return)
        self._previous_close = self._equity

    def _pending_return(self) -> float | None:
        """The current day's return so far, from the last equity against the previous close."""
        if self._previous_close is None or self._previous_close <= 0:
            return None
        return float(self._equity / self._previous_close - 1)

    def _track_drawdown(self, equity: Decimal) -> None:
        if equity >= self._peak:
            self._peak = equity
            self._drawdown = ZERO
            return
        self._drawdown = (self._peak - equity) / self._peak
        self._max_drawdown = max(self._max_drawdown, self._drawdown)

    def record_trade(self, trade: ClosedTrade) -> None:
        self._trades += 1
        if trade.pnl > 0:
            self._wins += 1
            self._gross_profit += trade.pnl
        elif trade.pnl < 0:
            self._gross_loss -= trade.pnl
        self._fees += trade.fees
        self._slippage += trade.slippage_cost

    def summary(self) -> Summary:
        """The statistics so far; the day in progress counts as closed at its last sample."""
        if self._first is None or self._last is None:
            raise ValueError("no equity observed")
        daily = replace(self._daily)
        pending = self._pending_return()
        if pending is not None:
            daily.add(pending)
        return Summary(
            start=self._first,
            end=self._last,
            initial_equity=self._initial,
            final_equity=self._equity,
            total_return_pct=return_pct(self._initial, self._equity),
            cagr_pct=cagr_pct(self._initial, self._equity, self._last - self._first),
            sharpe=daily.sharpe(),
            sortino=daily.sortino(),
            max_drawdown_pct=_hundredths(self._max_drawdown * HUNDRED),
            trades=self._trades,
            win_rate_pct=self._win_rate_pct(),
            profit_factor=self._profit_factor(),
            exposure_pct=self._exposure_pct(self._last - self._first),
            fees_paid=self._fees,
            slippage_cost=self._slippage,
        )

    def _win_rate_pct(self) -> Decimal | None:
        if self._trades == 0:
            return None
        return _hundredths(Decimal(self._wins) * HUNDRED / Decimal(self._trades))

    def _profit_factor(self) -> Decimal | None:
        if self._gross_loss == 0:
            return None
        return _hundredths(self._gross_profit / self._gross_loss)

    def _exposure_pct(self, span: timedelta) -> Decimal:
        if span <= timedelta(0):
            return _hundredths(ZERO)
        exposed = Decimal(self._exposed_time // MICROSECOND)
        return _hundredths(exposed * HUNDRED / Decimal(span // MICROSECOND))


TRADE_COLUMNS = tuple(field.name for field in fields(ClosedTrade))
EQUITY_COLUMNS = ("time", "equity", "drawdown_pct", "exposed")


def _csv_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class _CsvLog:
    """A CSV file written one row at a time, header first; closes on leaving ``with``."""

    def __init__(self, path: Path, header: tuple[str, ...]) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(header)

    def _row(self, values: list[object]) -> None:
        self._writer.writerow([_csv_value(value) for value in values])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class TradeLog(_CsvLog):
    """trades.csv: one row per closed trade, columns named after ``ClosedTrade``'s fields."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, TRADE_COLUMNS)

    def write(self, trade: ClosedTrade) -> None:
        self._row([getattr(trade, name) for name in TRADE_COLUMNS])


class EquityLog(_CsvLog):
    """equity.csv: time (ISO), equity, drawdown_pct, exposed (0/1) per equity sample."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, EQUITY_COLUMNS)

    def write(self, time: datetime, equity: Decimal, drawdown_pct: Decimal, exposed: bool) -> None:
        self._row([time, equity, drawdown_pct, int(exposed)])
