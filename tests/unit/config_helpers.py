"""The shipped config as data, so a test can break exactly one thing in a copy of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from services.config_validator.report import Report, validate

SHIPPED = Path(__file__).resolve().parents[2] / "config"
FILES = ("policy", "universe", "ratelimits", "strategies")


def shipped() -> dict[str, Any]:
    return {name: yaml.safe_load((SHIPPED / f"{name}.yaml").read_text()) for name in FILES}


def write(directory: Path, documents: dict[str, Any]) -> Path:
    for name, document in documents.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def validate_changed(directory: Path, change: Any, environ: dict[str, str] | None = None) -> Report:
    """Validate a copy of the shipped config after ``change(documents)`` edits it."""
    documents = copy.deepcopy(shipped())
    change(documents)
    return validate(write(directory, documents), environ or {})
