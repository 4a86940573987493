"""Talking to Coinbase Advanced Trade: credentials and JWTs, the REST and WebSocket
clients, one error tree, and the level-2 book.

The names below are loaded from their modules on first use: a service that needs only
the book or the product model does not pay for the HTTP, WebSocket and key-signing
stacks (about 25 MB of resident memory).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


_WHERE = {
    "AuthError": "shared.coinbase.errors",
    "BookSide": "shared.coinbase.book",
    "CdpCredentials": "shared.coinbase.auth",
    "CoinbaseError": "shared.coinbase.errors",
    "CoinbaseRest": "shared.coinbase.rest",
    "ConnectionLost": "shared.coinbase.errors",
    "CredentialsError": "shared.coinbase.errors",
    "FeedEvent": "shared.coinbase.ws_events",
    "FeedSettings": "shared.coinbase.ws_events",
    "Granularity": "shared.coinbase.granularity",
    "InvalidRequest": "shared.coinbase.errors",
    "L2Book": "shared.coinbase.book",
    "MarketDataFeed": "shared.coinbase.ws",
    "NotFound": "shared.coinbase.errors",
    "OrderRejected": "shared.coinbase.errors",
    "OutcomeUnknown": "shared.coinbase.errors",
    "RateLimited": "shared.coinbase.errors",
    "SequenceGap": "shared.coinbase.book",
    "SequenceTracker": "shared.coinbase.book",
    "ServerError": "shared.coinbase.errors",
    "VenueTimeout": "shared.coinbase.errors",
    "VenueUnreachable": "shared.coinbase.errors",
    "create_rest_http": "shared.coinbase.transport",
    "credentials_from_env": "shared.coinbase.auth",
    "request_uri": "shared.coinbase.auth",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
