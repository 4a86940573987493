"""CDP API keys: credentials from the environment only, and a fresh ES256 JWT per request.

The key name is ``organizations/{org_id}/apiKeys/{key_id}``; the secret is an EC private
key in PEM, often stored in an environment variable with literal ``\\n`` for line breaks.
Each REST request carries ``Authorization: Bearer <JWT>`` with header ``kid`` (the key
name) and a random ``nonce``, and claims ``sub`` (key name), ``iss`` = ``cdp``, ``nbf`` =
now, ``exp`` = now + 120 s and ``uri`` = ``"METHOD host/path"`` (no query string).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from shared.clock import Clock
from shared.coinbase.errors import CredentialsError

__all__ = [
    "JWT_LIFETIME_S",
    "CdpCredentials",
    "credentials_from_env",
    "new_private_key_pem",
    "request_uri",
]

JWT_LIFETIME_S = 120
_KEY_NAME = re.compile(r"^organizations/[^/\s]+/apiKeys/[^/\s]+$")


@dataclass(frozen=True)
class CdpCredentials:
    """A CDP key, usable for signing; its repr and str never show the secret."""

    key_name: str
    _private_key: EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def parse(cls, key_name: str, secret: str | SecretStr) -> CdpCredentials:
        """Validate both parts; errors say what is wrong without quoting the secret."""
        raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        key_name = key_name.strip()
        if not _KEY_NAME.match(key_name):
            raise CredentialsError(
                "CB_API_KEY must look like organizations/{org_id}/apiKeys/{key_id}"
            )
        pem = raw.strip().replace("\\n", "\n").encode()
        try:
            key = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise CredentialsError(
                "CB_API_SECRET is not a PEM private key (an EC key, "
                "-----BEGIN EC PRIVATE KEY-----, with real or literal \\n line breaks)"
            ) from None
        if not isinstance(key, EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise CredentialsError("CB_API_SECRET must be an ECDSA P-256 key (ES256)")
        return cls(key_name, key)

    def jwt_for(self, method: str, host: str, path: str, clock: Clock) -> str:
        """A JWT for one request; ``path`` without the query string."""
        now = int(clock.now().timestamp())
        claims = {
            "sub": self.key_name,
            "iss": "cdp",
            "nbf": now,
            "exp": now + JWT_LIFETIME_S,
            "uri": request_uri(method, host, path),
        }
        headers = {"kid": self.key_name, "nonce": secrets.token_hex(16)}
        return jwt.encode(claims, self._private_key, algorithm="ES256", headers=headers)

    def public_pem(self) -> str:
        """The public half, for a venue that must accept this key (exchange-sim)."""
        return (
            self._private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def __str__(self) -> str:
        return f"CdpCredentials(key_name={self.key_name!r})"


def new_private_key_pem() -> str:
    """A fresh P-256 private key in PEM: a key for exchange-sim, never for Coinbase."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def request_uri(method: str, host: str, path: str) -> str:
    """The ``uri`` claim: ``"GET api.coinbase.com/api/v3/brokerage/accounts"``."""
    return f"{method.upper()} {host}{path.split('?', 1)[0]}"


def credentials_from_env(environ: Mapping[str, str], *, required: bool) -> CdpCredentials | None:
    """``CB_API_KEY`` and ``CB_API_SECRET``; None when absent and not ``required`` (PAPER).

    LIVE passes ``required=True``: absence or a malformed key raises
    :class:`CredentialsError`, which stops the service at startup with the reason.
    """
    key_name, secret = environ.get("CB_API_KEY", ""), environ.get("CB_API_SECRET", "")
    if not key_name.strip() and not secret.strip():
        if required:
            raise CredentialsError("LIVE trading needs CB_API_KEY and CB_API_SECRET")
        return None
    if not key_name.strip() or not secret.strip():
        missing = "CB_API_KEY" if not key_name.strip() else "CB_API_SECRET"
        raise CredentialsError(f"{missing} is missing while the other half of the key is set")
    return CdpCredentials.parse(key_name, secret)
