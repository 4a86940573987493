"""One exception tree for everything Coinbase can answer, so callers decide per kind.

    CoinbaseError
    ├── CredentialsError        missing or malformed CDP key (raised at startup in LIVE)
    ├── AuthError               401/403: the venue rejected our JWT or the key's rights
    ├── NotFound                404
    ├── InvalidRequest          another 4xx: the request itself is wrong; do not repeat it
    ├── RateLimited             429: ``reset_after_s`` from the headers; the body may be HTML
    ├── OrderRejected           the venue refused an order: ``failure_reason`` is Coinbase's
    ├── VenueUnreachable        no connection was made: nothing was sent
    └── OutcomeUnknown          a write may or may not have taken effect
        ├── ServerError         5xx
        ├── VenueTimeout        no answer in time
        └── ConnectionLost      the connection broke after the request was sent

Messages never contain a secret: they are built from status codes, paths and the venue's
reasons, never from request headers or credentials.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CoinbaseError",
    "ConnectionLost",
    "CredentialsError",
    "InvalidRequest",
    "NotFound",
    "OrderRejected",
    "OutcomeUnknown",
    "RateLimited",
    "ServerError",
    "VenueTimeout",
    "VenueUnreachable",
]


class CoinbaseError(Exception):
    """Anything that went wrong talking to Coinbase."""


class CredentialsError(CoinbaseError):
    """The CDP key in the environment is missing or cannot be used."""


class AuthError(CoinbaseError):
    """The venue refused our credentials (401) or their permissions (403)."""


class NotFound(CoinbaseError):
    """The product, order or resource does not exist (404)."""


class InvalidRequest(CoinbaseError):
    """Any other 4xx: the request is malformed or not allowed; repeating it will not help."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class VenueUnreachable(CoinbaseError):
    """No connection could be made, so nothing was sent; safe to try again."""


class RateLimited(CoinbaseError):
    """429: wait ``reset_after_s`` before the next request on this channel."""

    def __init__(self, message: str, reset_after_s: float) -> None:
        super().__init__(message)
        self.reset_after_s = reset_after_s


class OrderRejected(CoinbaseError):
    """The venue refused an order; ``failure_reason`` is Coinbase's own code."""

    def __init__(self, message: str, failure_reason: str) -> None:
        super().__init__(message)
        self.failure_reason = failure_reason


class OutcomeUnknown(CoinbaseError):
    """A request may or may not have taken effect: look it up, never resend it blindly."""


class ServerError(OutcomeUnknown):
    """5xx from the venue."""


class VenueTimeout(OutcomeUnknown):
    """No answer within the timeout."""


class ConnectionLost(OutcomeUnknown):
    """The connection broke after the request went out."""
