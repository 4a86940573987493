"""One signed request to Coinbase, with every failure turned into the documented errors.

Error messages are built from the method, the path, the status and (for JSON bodies) the
venue's own message, never from request headers, so no JWT or key can leak into one. The
body of a 429 is never parsed: Coinbase may answer it with HTML.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from shared.clock import Clock
from shared.coinbase.auth import CdpCredentials
from shared.coinbase.errors import (
    AuthError,
    ConnectionLost,
    CredentialsError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    VenueTimeout,
    VenueUnreachable,
)
from shared.ratelimit import (
    RateLimitClient,
    RateLimitedTransport,
    RateLimitExceeded,
    retry_after_seconds,
)

__all__ = ["API_PREFIX", "RequestSender", "create_rest_http"]

API_PREFIX = "/api/v3/brokerage"


class RequestSender:
    """Signs (when private), sends and classifies one request; no retries here."""

    def __init__(
        self, http: httpx.AsyncClient, credentials: CdpCredentials | None, clock: Clock
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._clock = clock
        self._host = http.base_url.netloc.decode()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        private: bool,
    ) -> dict[str, Any]:
        full_path = API_PREFIX + path
        headers = {"Accept": "application/json"}
        if private:
            if self._credentials is None:
                raise CredentialsError(
                    f"{method} {path} needs a CDP key (CB_API_KEY, CB_API_SECRET); "
                    "without one, private calls are not made"
                )
            token = self._credentials.jwt_for(method, self._host, full_path, self._clock)
            headers["Authorization"] = f"Bearer {token}"
        content = orjson.dumps(json) if json is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method, full_path, params=params, content=content, headers=headers
            )
        except RateLimitExceeded as exc:
            raise RateLimited(f"{method} {path}: {exc}", exc.wait_s) from None
        except httpx.TimeoutException as exc:
            raise VenueTimeout(f"{method} {path}: no answer ({type(exc).__name__})") from None
        except httpx.ConnectError as exc:
            raise VenueUnreachable(f"{method} {path}: cannot connect ({exc})") from None
        except httpx.RequestError as exc:  # sent, then broken: read, protocol or decoding
            raise ConnectionLost(f"{method} {path}: {type(exc).__name__} ({exc})") from None
        return _classify(method, path, response)


def _classify(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    where = f"{method} {path}"
    if status == 429:
        wait_s = retry_after_seconds(response.headers)
        raise RateLimited(f"{where}: rate limited (HTTP 429), retry in {wait_s:.3f}s", wait_s)
    if 200 <= status < 300:
        try:
            body = response.json()
        except ValueError:
            raise ServerError(f"{where}: HTTP {status} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise ServerError(f"{where}: HTTP {status} with a JSON {type(body).__name__}")
        return body
    detail = _venue_message(response)
    if status in (401, 403):
        raise AuthError(f"{where}: HTTP {status} {detail}".rstrip())
    if status == 404:
        raise NotFound(f"{where}: HTTP 404 {detail}".rstrip())
    if status >= 500:
        raise ServerError(f"{where}: HTTP {status} {detail}".rstrip())
    raise InvalidRequest(f"{where}: HTTP {status} {detail}".rstrip(), status)


def _venue_message(response: httpx.Response) -> str:
    """Coinbase's ``error``/``message`` fields when the body is JSON; else nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[key]) for key in ("error", "message", "error_details") if body.get(key)]
    return ": ".join(parts)[:300]


def create_rest_http(
    base_url: str,
    limiter: RateLimitClient,
    *,
    timeout_s: float = 10.0,
    verify: bool | str = True,
    max_wait_s: float = 10.0,
) -> httpx.AsyncClient:
    """The HTTP client for :class:`shared.coinbase.rest.CoinbaseRest`: every request
    takes a token from ``limiter`` on the channel its path belongs to."""
    inner = httpx.AsyncHTTPTransport(verify=verify, retries=0)
    transport = RateLimitedTransport(inner, limiter, max_wait_s=max_wait_s)
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        headers={"User-Agent": "cbtrader"},
    )
