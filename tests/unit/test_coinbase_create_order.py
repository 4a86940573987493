"""create_order when answers go missing: a scripted venue behind httpx's transport seam."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from shared.clock import SimulatedClock
from shared.coinbase import AuthError, CdpCredentials, CoinbaseRest, OutcomeUnknown
from shared.matching.types import OrderKind, OrderRequest
from shared.money import Side

REQUEST = OrderRequest("coid-1", "BTC-USD", Side.BUY, OrderKind.MARKET_IOC, quote_size=Decimal(10))
PLACED = {"success": True, "success_response": {"order_id": "venue-1"}}
LISTED = {"orders": [{"order_id": "venue-1", "client_order_id": "coid-1",
                      "product_id": "BTC-USD", "side": "BUY", "status": "FILLED"}],
          "has_next": False, "cursor": ""}  # fmt: skip
NOTHING_LISTED = {"orders": [], "has_next": False, "cursor": ""}


PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


def _credentials() -> CdpCredentials:
    return CdpCredentials.parse("organizations/o/apiKeys/k", PEM)


class ScriptedVenue:
    """Answers POST /orders and the order list from queues; records what was sent."""

    def __init__(self, posts: list[object], lists: list[object]) -> None:
        self.posts, self.lists = posts, lists
        self.bodies: list[dict[str, object]] = []
        self.list_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.bodies.append(orjson.loads(request.content))
            return self._answer(self.posts.pop(0), request)
        self.list_calls += 1
        return self._answer(self.lists.pop(0) if self.lists else NOTHING_LISTED, request)

    @staticmethod
    def _answer(step: object, request: httpx.Request) -> httpx.Response:
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return httpx.Response(step, json={"error": "X"}, request=request)
        return httpx.Response(200, json=step, request=request)


def _client(venue: Callable[[httpx.Request], httpx.Response]) -> CoinbaseRest:
    http = httpx.AsyncClient(base_url="https://venue.test", transport=httpx.MockTransport(venue))
    clock = SimulatedClock(datetime(2026, 3, 1, tzinfo=UTC))
    return CoinbaseRest(http, credentials=_credentials(), clock=clock, read_attempts=1)


def _timeout(message: str = "slow") -> httpx.ReadTimeout:
    return httpx.ReadTimeout(message)


async def test_a_lost_answer_is_found_by_lookup_and_never_resent():
    venue = ScriptedVenue(posts=[_timeout()], lists=[LISTED])
    result = await _client(venue).create_order(REQUEST)
    assert result.order_id == "venue-1" and result.resolved_by_lookup
    assert len(venue.bodies) == 1


async def test_not_found_means_the_same_request_again_with_the_same_id():
    venue = ScriptedVenue(posts=[503, PLACED], lists=[NOTHING_LISTED])
    result = await _client(venue).create_order(REQUEST)
    assert result.order_id == "venue-1"
    assert venue.bodies[0] == venue.bodies[1]
    assert venue.bodies[0]["client_order_id"] == "coid-1"


async def test_failing_lookups_after_a_lost_answer_end_in_outcome_unknown_only():
    venue = ScriptedVenue(posts=[_timeout(), 429, 401, _timeout()], lists=[503, 503, 503, 503])
    with capture_logs() as logs, pytest.raises(OutcomeUnknown, match="coid-1") as caught:
        await _client(venue).create_order(REQUEST)
    assert {body["client_order_id"] for body in venue.bodies} == {"coid-1"}
    assert len(logs) >= 3  # every unconfirmed attempt is logged ...
    told = repr(logs) + str(caught.value)
    secret_line = PEM.splitlines()[1]
    assert secret_line not in told and "Bearer" not in told and "eyJ" not in told  # ... no key


async def test_a_duplicate_the_lookup_cannot_see_is_unknown_not_refused():
    duplicate = {"success": False, "error_response": {"error": "DUPLICATE_CLIENT_ORDER_ID"}}
    venue = ScriptedVenue(posts=[duplicate] * 4, lists=[])  # the venue never lists it
    with pytest.raises(OutcomeUnknown, match="duplicate"):
        await _client(venue).create_order(REQUEST)


async def test_a_plain_refusal_is_raised_at_once_without_a_lookup():
    venue = ScriptedVenue(posts=[401], lists=[])
    with pytest.raises(AuthError):
        await _client(venue).create_order(REQUEST)
    assert venue.list_calls == 0 and len(venue.bodies) == 1
