"""Turning the loader's problems into a report and an exit status."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from shared.config import Problem, Severity, validate_config_dir

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_UNREADABLE", "Report", "validate"]

EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


class Report:
    """The outcome of one validation: every problem, and the exit status it implies."""

    def __init__(self, config_dir: Path, problems: list[Problem]) -> None:
        self.config_dir = config_dir
        self.problems = problems

    def count(self, severity: Severity) -> int:
        return sum(1 for problem in self.problems if problem.severity is severity)

    @property
    def exit_status(self) -> int:
        if self.count(Severity.FATAL):
            return EXIT_UNREADABLE
        return EXIT_INVALID if self.count(Severity.ERROR) else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "config_dir": str(self.config_dir),
            "valid": self.exit_status == EXIT_OK,
            "exit_status": self.exit_status,
            "errors": self.count(Severity.ERROR) + self.count(Severity.FATAL),
            "warnings": self.count(Severity.WARNING),
            "problems": [problem.as_dict() for problem in self.problems],
        }

    def as_json(self) -> str:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2).decode()

    def as_text(self) -> str:
        lines = []
        for problem in self.problems:
            lines.append(str(problem))
            if problem.values:
                shown = ", ".join(f"{k}={v}" for k, v in problem.as_dict()["values"].items())
                lines.append(f"    values: {shown}")
        errors = self.count(Severity.ERROR) + self.count(Severity.FATAL)
        verdict = "valid" if self.exit_status == EXIT_OK else "INVALID"
        lines.append(
            f"{self.config_dir}: {verdict} "
            f"({errors} error(s), {self.count(Severity.WARNING)} warning(s))"
        )
        return "\n".join(lines)


def validate(config_dir: Path, environ: Mapping[str, str]) -> Report:
    """Validate ``config_dir``; never raises for anything the files contain."""
    _config, problems = validate_config_dir(config_dir, environ)
    return Report(config_dir, problems)
