"""Structured JSON logs with secrets redacted, for every service.

Two layers keep secrets out: keys that name a secret (``password``, ``token``, ...) have
their values replaced, and every registered secret value is scrubbed from every string,
including formatted exceptions, so a secret inside an error message is caught too.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import orjson
import structlog
from pydantic import SecretStr

__all__ = ["REDACTED", "configure_logging", "get_logger", "register_secret", "redact_text"]

REDACTED = "***"
# A key that names a secret: it is, or ends in, one of these words (``api_secret``,
# ``control_token``), but not ``tokens_granted`` or ``token_bucket_size``.
_SECRET_KEY = re.compile(
    r"(^|[_-])(pass(word|wd|phrase)?|secret([_-]?key)?|token|api[_-]?key|access[_-]?key"
    r"|authorization|cookie|credentials?|private[_-]?key|jwt)$",
    re.IGNORECASE,
)
# user:password@ in any URL (database and Redis DSNs), and password=... in key=value DSNs.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
_DSN_PASSWORD = re.compile(r"(?P<key>\bpassword=)[^&\s\"']+", re.I)
_secrets: set[str] = set()


def register_secret(value: str | SecretStr | None) -> None:
    """Scrub ``value`` from every log line from now on. Short values are ignored."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if raw and len(raw) >= 6:
        _secrets.add(raw)
        # A PEM stored with literal "\\n" is also seen with real newlines, and vice versa.
        _secrets.add(raw.replace("\\n", "\n"))
        _secrets.add(raw.replace("\n", "\\n"))


def redact_text(text: str) -> str:
    """Remove registered secrets and URL passwords from ``text``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<scheme>:{REDACTED}@", text)
    return _DSN_PASSWORD.sub(rf"\g<key>{REDACTED}", text)


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def _redact(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        event[key] = _redact_value(key, event[key])
    return event


def _serialize(value: Any, **_: Any) -> str:
    # Redact the finished line too: exception objects and bytes become text only here.
    return redact_text(orjson.dumps(value, default=str).decode())


def configure_logging(
    service: str, level: str = "INFO", *, secrets: Iterable[str | SecretStr | None] = ()
) -> None:
    """One JSON object per line on stdout, for our logs and the libraries' alike."""
    for secret in secrets:
        register_secret(secret)

    def add_service(_l: Any, _m: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("service", service)
        return event

    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact,
            structlog.processors.JSONRenderer(serializer=_serialize),
        ],
    )
    handler = _StdoutHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of the record, not at setup."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def get_logger(name: str) -> Any:
    """A structlog logger; ``log.info("event", key=value)``."""
    return structlog.stdlib.get_logger(name)
