"""The compose file read as a plan of local processes: the same commands and environment.

Every service built from our image becomes one process, started the way compose would:
its ``command``, its ``environment`` with compose's variable rules (``${VAR}``,
``${VAR:-default}``, ``${VAR:?message}``, ``$$``), its ``depends_on`` order and
conditions, its healthcheck URL and its restart policy. What only exists inside Docker is
translated, and nothing else:

- Redis and Postgres are the ones given (``REDIS_URL`` / ``DATABASE_URL`` are replaced);
- a URL naming another service (``http://rate-limiter:8050``) points at its local port;
- ``HTTP_HOST`` is 127.0.0.1 (compose publishes on 127.0.0.1 only, too);
- container paths of bind mounts (``/app/config``) become the host paths they mount;
- ``python`` is this interpreter, with the repository on ``PYTHONPATH`` as the image has.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ComposeError", "LocalService", "Plan", "interpolate", "plan", "read_env_file"]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "cbtrader:local"
_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\})")
_SERVICE_URL = re.compile(r"\b(https?|redis|postgresql(?:\+psycopg)?)://([a-z][a-z0-9-]*):(\d+)")
_HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[A-Za-z0-9_/-]*)")


class ComposeError(ValueError):
    """The compose file cannot be run locally as it stands; the message says why."""


@dataclass(frozen=True)
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int | None  # HTTP_PORT, where it serves /healthz, /readyz and /metrics
    health_path: str | None  # what its healthcheck asks for, e.g. /readyz
    one_shot: bool  # restart: "no" - runs to completion, as an init container
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition

    @property
    def url(self) -> str | None:
        return None if self.port is None else f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Plan:
    """The services in an order that respects every ``depends_on``."""

    services: list[LocalService]

    def get(self, name: str) -> LocalService:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a compose env file (comments and blanks skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#") or "=" not in text:
            continue
        key, value = text.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's substitution: ``:-``/``-`` defaults, ``:?``/``?`` required, ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        name, colon, operator, argument = match.groups()
        if name is None:
            return "$"
        value = variables.get(name)
        missing = value is None or (colon == ":" and value == "")
        if operator == "-":
            return argument if missing else str(value)
        if operator == "?" and missing:
            raise ComposeError(f"{name}: {argument or 'required'}")
        return "" if value is None else value

    return _VARIABLE.sub(substitute, text)


def plan(
    variables: Mapping[str, str],
    *,
    redis_url: str,
    database_url: str,
    ports: Mapping[str, int] | None = None,
    profiles: frozenset[str] = frozenset(),
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    host_paths: Mapping[str, Path] | None = None,
    compose_file: Path = ROOT / "docker-compose.yml",
) -> Plan:
    """The compose file's services of our image, as local processes.

    ``ports`` moves a service's HTTP port (every URL naming it follows); ``extra_env`` adds
    or replaces variables of one service (``"*"`` for all), after translation;
    ``host_paths`` mounts another host directory at a container path (``/app/config``).
    """
    compose = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    chosen = {
        name: spec for name, spec in compose["services"].items()
        if spec.get("image") == IMAGE and set(spec.get("profiles", [])) <= set(profiles)
    }  # fmt: skip
    local_ports = {name: _port(name, spec, variables) for name, spec in chosen.items()}
    local_ports.update({name: port for name, port in (ports or {}).items() if name in chosen})
    services = []
    for name in _ordered(chosen):
        spec = chosen[name]
        mounts = _mounts(spec, host_paths or {})
        env = _environment(name, spec, variables, local_ports, mounts, redis_url, database_url)
        extra = {**(extra_env or {}).get("*", {}), **(extra_env or {}).get(name, {})}
        env.update(extra)
        port = local_ports[name]
        if port is not None:
            env["HTTP_PORT"] = str(port)
        services.append(LocalService(
            name=name, argv=_argv(name, spec, variables, mounts), env=env, port=port,
            health_path=_health_path(spec), one_shot=spec.get("restart") == "no",
            depends_on={t: r["condition"] for t, r in (spec.get("depends_on") or {}).items()
                        if t in chosen},
        ))  # fmt: skip
    return Plan(services)


def _port(name: str, spec: Mapping[str, Any], variables: Mapping[str, str]) -> int | None:
    raw = (spec.get("environment") or {}).get("HTTP_PORT")
    if raw is None:
        return None
    try:
        return int(interpolate(str(raw), variables))
    except ValueError as exc:
        raise ComposeError(f"{name}: HTTP_PORT {raw!r} is not a port") from exc


def _ordered(chosen: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Compose order: every service after what it depends on (among those we run)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"depends_on cycle through {name}")
        visiting.add(name)
        for target in chosen[name].get("depends_on") or {}:
            if target in chosen:
                visit(target)
        visiting.discard(name)
        order.append(name)

    for name in chosen:
        visit(name)
    return order


def _mounts(spec: Mapping[str, Any], host_paths: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """(container path, host path) of each bind mount, longest container path first."""
    mounts = []
    for volume in spec.get("volumes", []):
        source, target, *_ = f"{volume}:".split(":")
        if source.startswith((".", "/")):
            mounts.append((target, Path(host_paths.get(target, ROOT / source)).resolve()))
    return sorted(mounts, key=lambda mount: -len(mount[0]))


def _to_host(value: str, mounts: list[tuple[str, Path]]) -> str:
    for target, host in mounts:
        if value == target or value.startswith(target + "/"):
            return str(host) + value[len(target) :]
    return value


def _argv(
    name: str, spec: Mapping[str, Any], variables: Mapping[str, str],
    mounts: list[tuple[str, Path]],
) -> list[str]:  # fmt: skip
    command = spec.get("command")
    if not isinstance(command, list) or command[:2] != ["python", "-m"]:
        raise ComposeError(f"{name}: command must be [python, -m, module, ...], got {command!r}")
    args = [_to_host(interpolate(str(arg), variables), mounts) for arg in command[2:]]
    return [sys.executable, "-m", *args]


def _environment(
    name: str, spec: Mapping[str, Any], variables: Mapping[str, str],
    ports: Mapping[str, int | None], mounts: list[tuple[str, Path]], redis_url: str,
    database_url: str,
) -> dict[str, str]:  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if "PATH" in os.environ:
        env["PATH"] = os.environ["PATH"]
    for key, raw in (spec.get("environment") or {}).items():
        try:
            value = interpolate("" if raw is None else str(raw), variables)
        except ComposeError as exc:
            raise ComposeError(f"{name}: {exc}") from None
        if key == "REDIS_URL":
            value = redis_url
        elif key == "DATABASE_URL":
            value = database_url
        elif key == "HTTP_HOST":
            value = "127.0.0.1"
        else:
            value = _SERVICE_URL.sub(lambda m: _local_url(m, ports), _to_host(value, mounts))
        env[key] = value
    return env


def _local_url(match: re.Match[str], ports: Mapping[str, int | None]) -> str:
    scheme, host, port = match.groups()
    local = ports.get(host)
    if host in ports and local is not None:
        return f"{scheme}://127.0.0.1:{local}"
    return match.group(0)


def _health_path(spec: Mapping[str, Any]) -> str | None:
    test = " ".join(str(part) for part in (spec.get("healthcheck") or {}).get("test", []))
    found = _HEALTH_URL.search(test)
    return found.group(2) if found else None
