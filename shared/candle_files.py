"""Candle files: one candle a row, CSV or Parquet, for history downloads, replays and backtests.

A file holds the columns ``start,low,high,open,close,volume``. ``start`` is UNIX
seconds; an ISO-8601 time with a UTC offset is read too (a time without one is refused
rather than guessed). Decimals are written as text so every digit survives the round
trip. A Parquet file with float columns is read through each float's shortest repr,
``Decimal(str(x))``: the digits a person would have written, not the binary value's long
expansion.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from shared.clock import ensure_utc
from shared.history_files import file_kind, write_atomically
from shared.money import to_decimal

__all__ = ["COLUMNS", "Candle", "candle_path", "iter_candles", "load_candles", "write_candles"]


@dataclass(frozen=True)
class Candle:
    """One bucket: ``start`` is its first second, in UNIX seconds."""

    start: int
    low: Decimal
    high: Decimal
    open: Decimal
    close: Decimal
    volume: Decimal


COLUMNS = ("start", "low", "high", "open", "close", "volume")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"[+-]?\d+")


def load_candles(path: Path) -> list[Candle]:
    """Candles from a ``.csv`` or ``.parquet`` file, ascending by start."""
    rows = _csv_rows(path) if _kind(path) == "csv" else _parquet_rows(path)
    first_seen: dict[int, str] = {}
    candles: list[Candle] = []
    for label, record in rows:
        candle = _parse(record, f"{path}: {label}")
        if candle.start in first_seen:
            raise ValueError(
                f"{path}: {label}: duplicate start {candle.start}"
                f" (first at {first_seen[candle.start]})"
            )
        first_seen[candle.start] = label
        candles.append(candle)
    candles.sort(key=lambda candle: candle.start)
    return candles


def iter_candles(path: Path) -> Iterator[Candle]:
    """Candles of a file one at a time, for histories too long to hold in memory.

    The file must already be in ascending order (``write_candles`` writes it so); a row
    out of order, or a repeated start, is an error naming it.
    """
    rows = _csv_rows(path) if _kind(path) == "csv" else _parquet_batches(path)
    previous: int | None = None
    for label, record in rows:
        candle = _parse(record, f"{path}: {label}")
        if previous is not None and candle.start <= previous:
            raise ValueError(
                f"{path}: {label}: start {candle.start} is not after {previous};"
                " a streamed file must be in ascending order"
            )
        previous = candle.start
        yield candle


def candle_path(candle: Candle) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Replay waypoints at 0, 1/3, 2/3 and 3/3 of a candle: low first when it closes up."""
    if candle.close >= candle.open:
        return candle.open, candle.low, candle.high, candle.close
    return candle.open, candle.high, candle.low, candle.close


def write_candles(path: Path, candles: Iterable[Candle]) -> int:
    """Write candles ascending by start, atomically; returns the number of rows."""
    kind = _kind(path)
    ordered = sorted(candles, key=lambda candle: candle.start)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.start == after.start:
            raise ValueError(f"duplicate candle start {after.start}")
    writer = _write_csv if kind == "csv" else _write_parquet
    write_atomically(path, lambda temporary: writer(temporary, ordered))
    return len(ordered)


def _kind(path: Path) -> str:
    return file_kind(path, "candle")


def _check_columns(path: Path, names: Iterable[str]) -> None:
    present = set(names)
    missing = [name for name in COLUMNS if name not in present]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")


def _csv_rows(path: Path) -> Iterator[tuple[str, Sequence[object]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        _check_columns(path, header)
        where = [header.index(name) for name in COLUMNS]
        width = len(header)
        for row in reader:
            if not row:
                continue  # a blank line, as DictReader skips it
            if len(row) < width:
                row += [""] * (width - len(row))  # a short row: its missing fields are empty
            yield f"line {reader.line_num}", [row[index] for index in where]


def _parquet_rows(path: Path) -> Iterator[tuple[str, Sequence[object]]]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]  # no stubs

    table = pq.read_table(path)
    _check_columns(path, table.column_names)
    columns = [table.column(name).to_pylist() for name in COLUMNS]
    for row, values in enumerate(zip(*columns, strict=True)):
        yield f"row {row + 1}", values


def _parquet_batches(path: Path) -> Iterator[tuple[str, Sequence[object]]]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]  # no stubs

    source = pq.ParquetFile(path)
    _check_columns(path, source.schema_arrow.names)
    row = 0
    for batch in source.iter_batches(batch_size=65_536, columns=list(COLUMNS)):
        columns = [batch.column(name).to_pylist() for name in COLUMNS]
        for values in zip(*columns, strict=True):
            row += 1
            yield f"row {row}", values


def _parse(values: Sequence[object], where: str) -> Candle:
    """One row's values, in ``COLUMNS`` order."""
    try:
        start = _start(values[0])
        low, high, open_, close, volume = (
            _decimal(value, name) for value, name in zip(values[1:], COLUMNS[1:], strict=True)
        )
    except ValueError as exc:  # MoneyError is a ValueError too
        raise ValueError(f"{where}: {exc}") from None
    if not 0 < low <= min(open_, close) <= max(open_, close) <= high:
        raise ValueError(f"{where}: need 0 < low <= open, close <= high")
    if volume < 0:
        raise ValueError(f"{where}: volume {volume} is negative")
    return Candle(start=start, low=low, high=high, open=open_, close=close, volume=volume)


def _start(value: object) -> int:
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"start {value!r} is neither UNIX seconds nor ISO-8601") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"start {value.isoformat()} has no UTC offset")
        seconds, rest = divmod(ensure_utc(value) - _EPOCH, timedelta(seconds=1))
        if rest:
            raise ValueError(f"start {value.isoformat()} is not a whole second")
        return int(seconds)
    raise ValueError(f"start {value!r} is neither UNIX seconds nor ISO-8601")


def _decimal(value: object, name: str) -> Decimal:
    if value is None or value == "":
        raise ValueError(f"{name} is missing")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} {value!r} is not finite")
        return Decimal(str(value))
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _text(value: Decimal) -> str:
    """Plain digits (``0.00000001``, not ``1E-8``) wherever that keeps the exponent."""
    exponent = value.as_tuple().exponent
    return format(value, "f") if isinstance(exponent, int) and exponent <= 0 else str(value)


def _write_csv(path: Path, candles: list[Candle]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for candle in candles:
            values = (_text(getattr(candle, name)) for name in COLUMNS[1:])
            writer.writerow([candle.start, *values])


def _write_parquet(path: Path, candles: list[Candle]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    columns = {"start": pa.array([c.start for c in candles], type=pa.int64())}
    for name in COLUMNS[1:]:
        columns[name] = pa.array([_text(getattr(c, name)) for c in candles], type=pa.string())
    pq.write_table(pa.table(columns), path)
