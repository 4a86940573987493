"""What candle and trade files have in common: their two formats and the atomic write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["file_kind", "write_atomically"]


def file_kind(path: Path, what: str) -> str:
    """``csv`` or ``parquet`` by the file's suffix; an error naming ``what`` otherwise."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: {what} files are .csv or .parquet, not {suffix or 'none'}")
    return suffix[1:]


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then move it into place: readers see
    the old file or the new one, never half of one."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
