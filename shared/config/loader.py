"""Reading config/: YAML with positions, schema validation with hints, then the checks."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from shared.config.checks import run_checks
from shared.config.models import (
    AppConfig,
    PolicyConfig,
    RateLimitsConfig,
    StrategiesConfig,
    UniverseConfig,
)
from shared.config.problems import ConfigError, Problem, Severity

__all__ = ["CONFIG_FILES", "load_config", "validate_config_dir"]

CONFIG_FILES: dict[str, type[BaseModel]] = {
    "policy": PolicyConfig,
    "universe": UniverseConfig,
    "ratelimits": RateLimitsConfig,
    "strategies": StrategiesConfig,
}


def load_config(config_dir: str | Path, environ: Mapping[str, str] | None = None) -> AppConfig:
    """The configuration every service starts from; raises :class:`ConfigError` on errors."""
    config, problems = validate_config_dir(config_dir, environ or {})
    if config is None or any(p.severity is not Severity.WARNING for p in problems):
        raise ConfigError(problems)
    return config


def validate_config_dir(
    config_dir: str | Path, environ: Mapping[str, str]
) -> tuple[AppConfig | None, list[Problem]]:
    """Every problem of the directory at once, and the config when the schema holds."""
    directory = Path(config_dir)
    documents: dict[str, Any] = {}
    problems: list[Problem] = []
    for name in CONFIG_FILES:
        document, problem = _read_yaml(directory / f"{name}.yaml")
        if problem:
            problems.append(problem)
        else:
            documents[name] = document
    if problems:
        return None, problems
    parsed: dict[str, BaseModel] = {}
    for name, model in CONFIG_FILES.items():
        try:
            parsed[name] = model.model_validate(documents[name])
        except ValidationError as exc:
            problems.extend(_schema_problems(f"{name}.yaml", model, exc))
    if problems:
        return None, problems
    config = AppConfig.model_validate(parsed)
    return config, run_checks(config, environ)


def _read_yaml(path: Path) -> tuple[Any, Problem | None]:
    file = path.name
    if not path.is_file():
        return None, Problem(
            Severity.FATAL, file, "", "file not found", hint=f"create {path}", check="file"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        message = f"YAML syntax error at {where}: {exc.problem or exc}"
        values = {"line": mark.line + 1, "column": mark.column + 1} if mark else {}
        return None, Problem(
            Severity.FATAL, file, "", message, hint="fix the YAML syntax", values=values,
            check="file",
        )  # fmt: skip
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return None, Problem(Severity.FATAL, file, "", f"unreadable: {exc}", check="file")
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return None, Problem(
            Severity.FATAL, file, "", f"top level must be a mapping, got {type(document).__name__}",
            hint="write key: value pairs at the top level", check="file",
        )  # fmt: skip
    return document, None


def _schema_problems(file: str, model: type[BaseModel], exc: ValidationError) -> list[Problem]:
    known = _field_names(model)
    problems = []
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error["loc"]]
        # Discriminated unions add the tag to the location; the operator never wrote it.
        location = [part for part in location if part not in _UNION_TAGS]
        path = ".".join(location)
        hint = ""
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(location[-1], known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "remove the key"
            message = f"unknown key {location[-1]!r}"
        else:
            message = error["msg"]
            hint = _hint_for(error["type"])
        values = {} if "input" not in error else {"value": _short(error["input"])}
        problems.append(Problem(Severity.ERROR, file, path, message, hint, values))
    return problems


_UNION_TAGS = {"ema_cross", "mean_reversion", "breakout"}


def _hint_for(error_type: str) -> str:
    return {
        "missing": "add the key",
        "greater_than": "use a larger value",
        "greater_than_equal": "use a larger value",
        "less_than": "use a smaller value",
        "less_than_equal": "use a smaller value",
        "string_pattern_mismatch": "check the spelling (e.g. BTC-USD, snake_case names)",
        "literal_error": "use one of the listed values",
        "enum": "use one of the listed values",
        "union_tag_invalid": "kind must be ema_cross, mean_reversion or breakout",
    }.get(error_type, "")


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


def _field_names(model: type[BaseModel]) -> list[str]:
    """Every field name reachable from ``model``, for did-you-mean hints."""
    names: set[str] = set()
    pending: list[Any] = [model]
    seen: set[Any] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            for name, info in current.model_fields.items():
                names.add(name)
                pending.append(info.annotation)
        for argument in getattr(current, "__args__", ()) or ():
            pending.append(argument)
        for meta in getattr(current, "__metadata__", ()) or ():
            pending.append(meta)
        origin = getattr(current, "__origin__", None)
        if origin is not None:
            pending.append(origin)
    return sorted(names)
