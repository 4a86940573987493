"""Talking to Coinbase Advanced Trade: credentials and JWTs, the REST and WebSocket
clients, one error tree, and the level-2 book."""

from shared.coinbase.auth import CdpCredentials, credentials_from_env, request_uri
from shared.coinbase.book import BookSide, L2Book, SequenceGap, SequenceTracker
from shared.coinbase.errors import (
    AuthError,
    CoinbaseError,
    ConnectionLost,
    CredentialsError,
    InvalidRequest,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    ServerError,
    VenueTimeout,
    VenueUnreachable,
)
from shared.coinbase.granularity import Granularity
from shared.coinbase.rest import CoinbaseRest
from shared.coinbase.transport import create_rest_http
from shared.coinbase.ws import MarketDataFeed
from shared.coinbase.ws_events import FeedEvent, FeedSettings

__all__ = [
    "AuthError",
    "BookSide",
    "CdpCredentials",
    "CoinbaseError",
    "CoinbaseRest",
    "ConnectionLost",
    "CredentialsError",
    "FeedEvent",
    "FeedSettings",
    "Granularity",
    "InvalidRequest",
    "L2Book",
    "MarketDataFeed",
    "NotFound",
    "OrderRejected",
    "OutcomeUnknown",
    "RateLimited",
    "SequenceGap",
    "SequenceTracker",
    "ServerError",
    "VenueTimeout",
    "VenueUnreachable",
    "create_rest_http",
    "credentials_from_env",
    "request_uri",
]
