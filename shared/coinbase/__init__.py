"""Talking to Coinbase Advanced Trade: credentials and JWTs, errors, the level-2 book."""

from shared.coinbase.auth import CdpCredentials, credentials_from_env, request_uri
from shared.coinbase.book import BookSide, L2Book, SequenceGap, SequenceTracker
from shared.coinbase.errors import (
    AuthError,
    CoinbaseError,
    CredentialsError,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    VenueTimeout,
)

__all__ = [
    "AuthError",
    "BookSide",
    "CdpCredentials",
    "CoinbaseError",
    "CredentialsError",
    "L2Book",
    "NotFound",
    "OrderRejected",
    "OutcomeUnknown",
    "RateLimited",
    "SequenceGap",
    "SequenceTracker",
    "ServerError",
    "VenueTimeout",
    "credentials_from_env",
    "request_uri",
]
