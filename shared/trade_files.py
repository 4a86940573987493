"""Trade files: one print a row, CSV or Parquet, for backtests on recorded trades.

A file holds the columns ``time,price,size`` and, optionally, ``side`` (BUY or SELL:
the taker's side) and ``trade_id``. ``time`` is UNIX seconds, fractional allowed, or an
ISO-8601 time with a UTC offset (a time without one is refused rather than guessed);
either is kept to the microsecond, further digits dropped as Python's datetime drops
them. Rows must be in ascending time order; prints of one instant keep the file's order.
When the ``trade_id`` column is there, every row needs one, and an id may not repeat
within an instant (a recorder that wrote a resubscribe's snapshot twice). A blank
``side`` is an unknown side. A Parquet file with float columns is read through each
float's shortest repr, as candle files are.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from shared.clock import ensure_utc
from shared.history_files import file_kind, write_atomically
from shared.money import Side, to_decimal

__all__ = ["COLUMNS", "REQUIRED", "TradePrint", "iter_trades", "write_trades"]


@dataclass(frozen=True, slots=True)
class TradePrint:
    """One trade: when, at what price, how much; the taker's side and the venue's id if known."""

    time: datetime
    price: Decimal
    size: Decimal
    side: Side | None = None
    trade_id: str | None = None


REQUIRED = ("time", "price", "size")
COLUMNS = (*REQUIRED, "side", "trade_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_MICROS = Decimal(1_000_000)


def iter_trades(path: Path) -> Iterator[TradePrint]:
    """The prints of a file one at a time, for histories too long to hold in memory.

    A row earlier than the one before it, or a trade id repeated within one instant, is
    an error naming the file and the row.
    """
    rows = _csv_rows(path) if _kind(path) == "csv" else _parquet_batches(path)
    previous: datetime | None = None
    ids_now: dict[str, str] = {}  # trade id -> where, for the prints of the current instant
    for label, record in rows:
        where = f"{path}: {label}"
        trade = _parse(record, where)
        if previous is not None and trade.time < previous:
            raise ValueError(
                f"{where}: time {trade.time.isoformat()} is before {previous.isoformat()};"
                " a trades file must be in ascending time order"
            )
        if trade.time != previous:
            ids_now.clear()
        previous = trade.time
        if trade.trade_id is not None:
            first = ids_now.get(trade.trade_id)
            if first is not None:
                raise ValueError(f"{where}: trade_id {trade.trade_id!r} repeats ({first})")
            ids_now[trade.trade_id] = label
        yield trade


def write_trades(path: Path, trades: Iterable[TradePrint]) -> int:
    """Write prints in the given (ascending) order, atomically; returns the number of rows.

    ``side`` is written when any print has one, ``trade_id`` when all do.
    """
    kind = _kind(path)
    rows = list(trades)
    for before, after in zip(rows, rows[1:], strict=False):
        if after.time < before.time:
            raise ValueError(f"prints out of order: {after.time} after {before.time}")
    ids = sum(trade.trade_id is not None for trade in rows)
    if 0 < ids < len(rows):
        raise ValueError("a trade_id on some prints but not all: a reader needs all or none")
    columns = [*REQUIRED, *(["side"] if any(t.side for t in rows) else []),
               *(["trade_id"] if ids else [])]  # fmt: skip
    table = [[_field(getattr(trade, name)) for name in columns] for trade in rows]

    def write(temporary: Path) -> None:
        if kind == "csv":
            with temporary.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows(table)
        else:
            _write_parquet(temporary, columns, table)

    write_atomically(path, write)
    return len(rows)


def _kind(path: Path) -> str:
    return file_kind(path, "trade")


def _present(path: Path, names: Iterable[str]) -> list[str]:
    """The columns to read, in ``COLUMNS`` order; an error when a required one is missing."""
    given = set(names)
    missing = [name for name in REQUIRED if name not in given]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return [name for name in COLUMNS if name in given]


def _csv_rows(path: Path) -> Iterator[tuple[str, Sequence[object]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        present = _present(path, header)
        where = [header.index(name) if name in present else None for name in COLUMNS]
        width = len(header)
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) < width:
                row += [""] * (width - len(row))  # a short row: its missing fields are empty
            values = [row[index] if index is not None else None for index in where]
            yield f"line {reader.line_num}", values


def _parquet_batches(path: Path) -> Iterator[tuple[str, Sequence[object]]]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]  # no stubs

    source = pq.ParquetFile(path)
    present = _present(path, source.schema_arrow.names)
    row = 0
    for batch in source.iter_batches(batch_size=65_536, columns=present):
        read = {name: batch.column(name).to_pylist() for name in present}
        columns = [read.get(name, [None] * batch.num_rows) for name in COLUMNS]
        for values in zip(*columns, strict=True):
            row += 1
            yield f"row {row}", values


def _parse(values: Sequence[object], where: str) -> TradePrint:
    """One row's values, in ``COLUMNS`` order; None for a column the file does not have."""
    time, price, size, side, trade_id = values
    try:
        return TradePrint(
            time=_time(time), price=_positive(price, "price"), size=_positive(size, "size"),
            side=_side(side), trade_id=_trade_id(trade_id),
        )  # fmt: skip
    except ValueError as exc:  # MoneyError is a ValueError too
        raise ValueError(f"{where}: {exc}") from None


def _time(value: object) -> datetime:
    if value is None or value == "":
        raise ValueError("time is missing")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _from_seconds(Decimal(text))
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"time {text!r} is neither UNIX seconds nor ISO-8601") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"time {value!r} is not finite")
        return _from_seconds(Decimal(str(value)))
    if isinstance(value, int) and not isinstance(value, bool):
        return _from_seconds(Decimal(value))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"time {value.isoformat()} has no UTC offset")
        return ensure_utc(value)
    raise ValueError(f"time {value!r} is neither UNIX seconds nor ISO-8601")


def _from_seconds(seconds: Decimal) -> datetime:
    micros = int((seconds * _MICROS).to_integral_value(ROUND_FLOOR))
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError(f"time {seconds} is out of range") from None


def _positive(value: object, name: str) -> Decimal:
    if value is None or value == "":
        raise ValueError(f"{name} is missing")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} {value!r} is not finite")
        number = Decimal(str(value))
    else:
        try:
            number = to_decimal(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if number <= 0:
        raise ValueError(f"{name} {number} is not positive")
    return number


def _side(value: object) -> Side | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # no column, or a blank: the taker's side is not known
    text = str(value).strip().upper()
    if text not in Side.__members__:
        raise ValueError(f"side {value!r} is neither BUY nor SELL")
    return Side(text)


def _trade_id(value: object) -> str | None:
    if value is None:
        return None  # no such column
    text = str(value).strip()
    if not text:
        raise ValueError("trade_id is missing (the file has the column, so every row needs one)")
    return text


def _field(value: object) -> str:
    if isinstance(value, datetime):  # UNIX seconds, to the microsecond
        return _text(Decimal((value - _EPOCH) // timedelta(microseconds=1)) / _MICROS)
    if isinstance(value, Decimal):
        return _text(value)
    return "" if value is None else str(value)


def _text(value: Decimal) -> str:
    """Plain digits (``0.00000001``, not ``1E-8``) wherever that keeps the exponent."""
    exponent = value.as_tuple().exponent
    return format(value, "f") if isinstance(exponent, int) and exponent <= 0 else str(value)


def _write_parquet(path: Path, columns: list[str], table: list[list[str]]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    arrays = {
        name: pa.array([row[index] for row in table], type=pa.string())
        for index, name in enumerate(columns)
    }
    pq.write_table(pa.table(arrays), path)
