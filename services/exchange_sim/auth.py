"""Checks CDP JWTs as Coinbase does: ES256 by a known key, in time, for this request.

A token passes when its header ``kid`` names a configured key, its ES256 signature
verifies against that key's public half, ``iss`` is ``cdp``, ``sub`` is the key name,
``nbf <= now < exp`` (a few seconds of leeway for clock skew), and ``uri`` is exactly
``"METHOD host/path"`` for the request being made (no query string). WebSocket
subscribe tokens carry no ``uri``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from shared.coinbase.auth import request_uri

__all__ = ["JwtVerifier", "Unauthenticated", "load_public_keys"]

LEEWAY_S = 5


class Unauthenticated(Exception):
    """Why a request is refused with 401; safe to show (it never quotes the token)."""


def load_public_keys(pems: Mapping[str, str]) -> dict[str, EllipticCurvePublicKey]:
    """Key name -> P-256 public key; literal ``\\n`` in the PEM text are accepted."""
    keys: dict[str, EllipticCurvePublicKey] = {}
    for name, pem in pems.items():
        key = load_pem_public_key(pem.replace("\\n", "\n").encode())
        if not isinstance(key, EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"key {name}: only ECDSA P-256 public keys are accepted")
        keys[name] = key
    return keys


class JwtVerifier:
    def __init__(self, keys: Mapping[str, EllipticCurvePublicKey]) -> None:
        self._keys = dict(keys)

    def verify(
        self, token: str, now: datetime, *, method: str | None = None, host: str = "",
        path: str = "",
    ) -> str:  # fmt: skip
        """The key name the token was signed with; raises :class:`Unauthenticated`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token") from None
        name = header.get("kid")
        if header.get("alg") != "ES256":
            raise Unauthenticated("tokens must be signed with ES256")
        key = self._keys.get(name) if isinstance(name, str) else None
        if key is None or not isinstance(name, str):
            raise Unauthenticated("unknown API key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                issuer="cdp",
                options={"require": ["exp", "nbf", "sub", "iss"], "verify_exp": False,
                         "verify_nbf": False},
            )  # fmt: skip
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {type(exc).__name__}") from None
        self._check_claims(claims, name, now, method, host, path)
        return name

    @staticmethod
    def _check_claims(
        claims: dict[str, object], name: str, now: datetime, method: str | None, host: str,
        path: str,
    ) -> None:  # fmt: skip
        moment = now.timestamp()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not isinstance(nbf, int | float) or not isinstance(exp, int | float):
            raise Unauthenticated("nbf and exp must be numbers")
        if moment + LEEWAY_S < nbf:
            raise Unauthenticated("token not yet valid (nbf)")
        if moment - LEEWAY_S >= exp:
            raise Unauthenticated("token expired (exp)")
        if claims.get("sub") != name:
            raise Unauthenticated("sub must be the key name")
        if method is not None and claims.get("uri") != request_uri(method, host, path):
            raise Unauthenticated("uri claim does not match this request")
