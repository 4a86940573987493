"""Looking for secrets in everything a running stack says: its log, its metrics, its
status and error answers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

__all__ = ["everything_served", "leaked", "pem_lines", "with_password"]


def with_password(url: str, password: str) -> tuple[str, dict[str, str]]:
    """The database URL with a password to look for: the one it has, or ``password`` added
    when it is a local server's password-less superuser (which trusts local connections,
    so any password is accepted)."""
    parts = urlsplit(url)
    if parts.password:
        return url, {"database password": parts.password}
    if parts.username == "postgres" and parts.hostname == "127.0.0.1":
        netloc = f"postgres:{password}@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit(parts._replace(netloc=netloc)), {"database password": password}
    return url, {}  # someone else's server: its password is not ours to know


def pem_lines(name: str, pem: str) -> dict[str, str]:
    """Each line of a PEM key's body as a secret of its own: a log that printed one line of
    the key has leaked it, though the whole key appears nowhere."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return {f"{name}, line {n}": line for n, line in enumerate(body, 1) if len(line) >= 16}


async def everything_served(services: dict[str, dict[str, Any]], auth: httpx.Auth) -> str:
    """Every health, metrics and control answer the stack gives, refusals included, as one
    text."""
    texts = []
    async with httpx.AsyncClient(auth=auth, timeout=10) as client:
        for entry in services.values():
            for path in ("/healthz", "/readyz", "/metrics"):
                texts.append((await client.get(entry["url"] + path)).text)
        risk = services["risk"]["url"]
        for path in ("/v1/status", "/v1/positions", "/v1/decisions?limit=1000"):
            texts.append((await client.get(risk + path)).text)
        refused = await client.get(
            risk + "/v1/status", headers={"Authorization": "Bearer no"}, auth=None
        )
        assert refused.status_code == 401
        texts.append(refused.text)
    return "\n".join(texts)


def leaked(secrets: dict[str, str], said: str) -> list[str]:
    """The names (never the values) of the secrets found in ``said``."""
    return [name for name, secret in secrets.items() if secret in said]
