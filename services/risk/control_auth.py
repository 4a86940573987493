"""Control API credentials: a fresh signed token per request, each usable once.

``CONTROL_API_TOKEN`` is a shared secret that never travels. Each request carries
``Authorization: Bearer <JWT>``, an HS256 JWT signed with the secret, with the claims

- ``uri``: ``"METHOD /path"`` of this request (decoded, no query string), so a token for
  ``GET /v1/status`` cannot pause trading;
- ``iat`` and ``exp``: issued now, valid for at most :data:`MAX_LIFETIME_S`;
- ``jti``: a random id; risk remembers every id it accepted (in Redis, until the token
  would have expired anyway), so a token seen again, a replay, is refused;
- ``sub``: who acts, recorded in the audit trail with the caller's address.

Clients sign with :func:`mint_token`; ``services.risk.ctl.ControlAuth`` signs every request
an httpx client sends, and ``python -m services.risk.ctl`` does it for the command line. Times are
wall-clock times whatever clock the market runs on: a token's life is a real interval.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import jwt
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.clock import Clock, LiveClock

__all__ = [
    "MAX_LIFETIME_S",
    "ControlTokenVerifier",
    "Refused",
    "Unavailable",
    "mint_token",
]

MAX_LIFETIME_S = 120
LEEWAY_S = 5
DEFAULT_ACTOR = "operator"
ACTOR = re.compile(r"[\w.@ -]{1,64}")
_JTI = re.compile(r"[A-Za-z0-9_-]{16,64}")


class Refused(Exception):
    """Why a token is not accepted; safe to answer with (it never quotes the token)."""


class Unavailable(Exception):
    """Whether a token was used before cannot be told now (Redis is down)."""


def _secret(value: str | SecretStr) -> bytes:
    """The HMAC key: a digest of the secret, so that every key is 32 bytes long."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return hashlib.sha256(b"cbtrader control api\0" + raw.encode()).digest()


def mint_token(
    secret: str | SecretStr,
    method: str,
    path: str,
    *,
    actor: str = DEFAULT_ACTOR,
    lifetime_s: int = 60,
    clock: Clock | None = None,
) -> str:
    """A token for one request: ``method`` and ``path``, decoded, without the query."""
    now = int((clock or LiveClock()).now().timestamp())
    claims = {
        "uri": f"{method.upper()} {path}",
        "iat": now,
        "exp": now + lifetime_s,
        "jti": secrets.token_urlsafe(18),
        "sub": actor,
    }
    return jwt.encode(claims, _secret(secret), algorithm="HS256")


@dataclass(frozen=True)
class _Claims:
    uri: str
    issued: float
    expires: float
    token_id: str
    actor: str


@dataclass(frozen=True)
class Accepted:
    actor: str
    token_id: str


class ControlTokenVerifier:
    """Checks a request's token: signature, request, lifetime, and first use."""

    def __init__(
        self,
        secret: SecretStr | None,
        redis: Redis,
        *,
        used_key_prefix: str,
        clock: Clock | None = None,
    ) -> None:
        self._secret = _secret(secret) if secret is not None else None
        self._redis = redis
        self._used_key_prefix = used_key_prefix
        self._clock = clock or LiveClock()

    @property
    def configured(self) -> bool:
        return self._secret is not None

    async def verify(self, token: str, method: str, path: str) -> Accepted:
        """Raises :class:`Refused` for a token that must not act, :class:`Unavailable`
        when its first use cannot be checked."""
        claims = self._claims(token)
        now = self._clock.now().timestamp()
        if claims.uri != f"{method.upper()} {path}":
            raise Refused("token was signed for another request")
        if not claims.issued - LEEWAY_S <= now <= claims.expires + LEEWAY_S:
            raise Refused("token expired or not yet valid")
        if claims.expires - claims.issued > MAX_LIFETIME_S:
            raise Refused(f"token lifetime over {MAX_LIFETIME_S} s")
        await self._first_use(claims.token_id, ttl_s=claims.expires + LEEWAY_S - now)
        return Accepted(claims.actor, claims.token_id)

    def _claims(self, token: str) -> _Claims:
        # The secret is compared inside the HMAC check; with none configured every
        # token fails the same way, so a caller learns nothing from the answer.
        try:
            raw = jwt.decode(
                token,
                self._secret or secrets.token_bytes(32),
                algorithms=["HS256"],
                options={"require": ["uri", "iat", "exp", "jti"], "verify_exp": False,
                         "verify_iat": False},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            raise Refused("wrong signature") from None
        except jwt.InvalidTokenError:
            raise Refused(
                "malformed token: sign each request (python -m services.risk.ctl)"
            ) from None
        issued, expires, uri = raw["iat"], raw["exp"], raw["uri"]
        token_id, actor = raw["jti"], raw.get("sub", DEFAULT_ACTOR)
        if not all(
            isinstance(n, int | float) and not isinstance(n, bool) for n in (issued, expires)
        ):
            raise Refused("iat and exp must be numbers")
        if not isinstance(uri, str):
            raise Refused("uri must be a string")
        if not isinstance(token_id, str) or not _JTI.fullmatch(token_id):
            raise Refused("token id (jti) must be 16 to 64 URL-safe characters")
        if not isinstance(actor, str) or not ACTOR.fullmatch(actor):
            raise Refused("sub: 1 to 64 letters, digits, spaces or . @ _ -")
        return _Claims(uri, float(issued), float(expires), token_id, actor)

    async def _first_use(self, token_id: str, *, ttl_s: float) -> None:
        key = f"{self._used_key_prefix}{token_id}"
        try:
            first = await self._redis.set(key, b"1", nx=True, px=max(1, int(ttl_s * 1000)))
        except RedisError as exc:
            raise Unavailable(f"cannot check the token for reuse: {type(exc).__name__}") from None
        if not first:
            raise Refused("token already used")
