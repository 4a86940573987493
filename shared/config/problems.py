"""What is wrong with a configuration, as data: the validator prints it, services refuse it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["ConfigError", "Problem", "Severity", "error_at", "warning_at"]


class Severity(StrEnum):
    FATAL = "fatal"
    """A file is missing or cannot be parsed: nothing else can be judged."""
    ERROR = "error"
    """The configuration contradicts itself or the venue: nothing may start."""
    WARNING = "warning"
    """Legal but probably not what was meant; printed, never blocks."""


@dataclass(frozen=True)
class Problem:
    severity: Severity
    file: str
    path: str
    message: str
    hint: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    check: str = "schema"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["values"] = {key: _plain(value) for key, value in self.values.items()}
        return data

    def __str__(self) -> str:
        location = f"{self.file}:{self.path}" if self.path else self.file
        hint = f" (fix: {self.hint})" if self.hint else ""
        return f"{self.severity.value}: {location}: {self.message}{hint}"


def error_at(check: str, file: str, path: str, message: str, hint: str, **values: Any) -> Problem:
    """An error found by ``check`` at ``file``:``path``; ``values`` are the offending values."""
    return Problem(Severity.ERROR, file, path, message, hint, dict(values), check)


def warning_at(check: str, file: str, path: str, message: str, hint: str, **values: Any) -> Problem:
    """A warning found by ``check`` at ``file``:``path``."""
    return Problem(Severity.WARNING, file, path, message, hint, dict(values), check)


def _plain(value: Any) -> Any:
    """A JSON-safe copy: anything a YAML file can hold must render in the report."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, (str, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


class ConfigError(Exception):
    """The configuration has errors; ``problems`` lists every one of them, warnings too."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity is not Severity.WARNING]
        super().__init__(
            f"{len(errors)} configuration error(s):\n" + "\n".join(f"  {p}" for p in errors)
        )
