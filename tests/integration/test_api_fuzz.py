"""The rate-limiter and risk control APIs fuzzed from their own OpenAPI schemas over HTTP.

schemathesis reads each service's ``/openapi.json`` from the live server and generates
requests for every operation it declares, valid ones and invalid ones. Every answer must
be below 500, every 4xx must be JSON whose ``detail`` says what is wrong, and every
answer must match the response schema its route declares. Each service runs on a real
socket over real Redis (and Postgres, for risk) and is thrown away after its test, so the
pauses and flattens the fuzzer sends change nothing outside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.risk.control_auth import mint_token
from shared.clock import SimulatedClock
from shared.config import RateLimitsConfig
from shared.db import upgrade
from tests.support.risk import TOKEN, risk_service, seed_catalog
from tests.support.venue import rate_limiter_service

# Examples per operation and generation mode: enough to reach every field's bounds and
# types, few enough that the whole module runs in seconds.
EXAMPLES = 50
# How a case is sent: the case and the Authorization value drawn for it (None: no header).
Send = Callable[[Case, str | None], Response]
Hook = Callable[[Any, Any], st.SearchStrategy[Any]]

_REASON_PHRASES = {status.phrase.lower() for status in HTTPStatus}


def _says_what_is_wrong(detail: Any) -> bool:
    """A sentence, or FastAPI's list of validation errors each naming a field and a message.
    A bare reason phrase ("Not Found", "Unauthorized") only repeats the status."""
    if isinstance(detail, str):
        return bool(detail.strip()) and detail.strip().lower() not in _REASON_PHRASES
    if isinstance(detail, list) and detail:
        return all(
            isinstance(error, dict)
            and isinstance(error.get("loc"), list) and bool(error["loc"])
            and isinstance(error.get("msg"), str) and bool(error["msg"].strip())
            and isinstance(error.get("type"), str)
            for error in detail
        )  # fmt: skip
    return False


def _detail(response: Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        text = response.text[:200]
        raise AssertionError(f"{response.status_code} is not JSON: {text!r}") from None
    return body.get("detail") if isinstance(body, dict) else None


@schemathesis.check
def errors_say_why(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is JSON with a ``detail`` a caller can act on."""
    if not 400 <= response.status_code < 500:
        return None
    detail = _detail(response)
    assert _says_what_is_wrong(detail), f"{response.status_code} says {detail!r}"
    return True


@schemathesis.check
def token_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A fresh token signed for this very request is never refused."""
    assert response.status_code != 401, f"a signed request refused: {_detail(response)}"
    return True


@schemathesis.check
def refused_as_unauthorized(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No valid token: 401 and why, whatever else is wrong with the request, a body that
    is not JSON at all included: the token is checked before the body is read."""
    detail = _detail(response)
    assert response.status_code == 401, f"{response.status_code} without a token: {detail}"
    assert _says_what_is_wrong(detail), f"{response.status_code} says {detail!r}"
    return True


SOUND = [not_a_server_error, errors_say_why, response_schema_conformance]


def _can_be_invalid(operation: APIOperation) -> bool:
    """A body or a query can be sent malformed; a text path parameter cannot (any segment
    is text), and an operation without inputs has nothing to break."""
    queries = [p for p in operation.iter_parameters() if p.location is ParameterLocation.QUERY]
    return len(operation.body) > 0 or bool(queries)


def _fuzz_operation(
    operation: APIOperation, mode: GenerationMode, send: Send,
    authorization: st.SearchStrategy[str | None], checks: list[CheckFunction],
) -> None:  # fmt: skip
    # No example database: every operation's test is this one function, so saved examples
    # would be replayed against the wrong operation. A failure prints its seed instead.
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), authorization=authorization)
    def one(case: Case, authorization: str | None) -> None:
        case.validate_response(send(case, authorization), checks=checks)

    one()


def _boundaries(
    schema: BaseSchema, operation: APIOperation, send: Send, checks: list[CheckFunction]
) -> None:
    """schemathesis's coverage cases, the same every run: each bound and just past it, every
    wrong type, every required field left out, every unknown field added."""
    cases = schema.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=schema.config.generation
    )
    for case in cases:
        case.validate_response(send(case, None), checks=checks)


def fuzz(
    schema: BaseSchema, send: Send, checks: list[CheckFunction], *,
    authorization: st.SearchStrategy[str | None] | None = None,
    only: Callable[[APIOperation], bool] = lambda _operation: True,
) -> list[str]:  # fmt: skip
    """Every operation ``only`` admits, at its boundaries (when no ``authorization`` is
    drawn) and with generated requests, valid and invalid; returns their labels."""
    # Our routes are under test, not the router's 405 for a method nothing serves.
    schema.config.phases.coverage.unexpected_methods = set()
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not only(operation):
            continue
        if authorization is None:
            _boundaries(schema, operation, send, checks)
        drawn = st.none() if authorization is None else authorization
        _fuzz_operation(operation, GenerationMode.POSITIVE, send, drawn, checks)
        if _can_be_invalid(operation):
            _fuzz_operation(operation, GenerationMode.NEGATIVE, send, drawn, checks)
        fuzzed.append(operation.label)
    return fuzzed


def _or_known(field: str, known: st.SearchStrategy[Any]) -> Hook:
    """A flatmap hook: ``field`` as generated or, as often, a value the service knows, so
    valid requests reach the code behind a lookup as well as its refusal."""

    def flatmap(_context: Any, values: Any) -> st.SearchStrategy[Any]:
        if not isinstance(values, dict) or field not in values:
            return st.just(values)
        return st.one_of(st.just(values), known.map(lambda value: {**values, field: value}))

    return flatmap


async def test_rate_limiter_api_answers_every_request_soundly(redis_url, bus_keys):
    async with rate_limiter_service(redis_url, bus_keys.prefix) as url:
        schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{url}/openapi.json")
        channels = st.sampled_from(sorted(RateLimitsConfig.model_fields))
        schema.hook("flatmap_body")(_or_known("channel", channels))

        def send(case: Case, _authorization: str | None) -> Response:
            return case.call(url)

        fuzzed = await asyncio.to_thread(fuzz, schema, send, SOUND)
    assert set(fuzzed) == {"GET /healthz", "GET /readyz", "GET /metrics", "POST /v1/tokens",
                           "POST /v1/feedback", "GET /v1/channels"}  # fmt: skip


def _signed(url: str) -> Send:
    """Each case with a token of its own, minted for its method and path just before it
    goes; the path decoded, as :class:`ControlAuth` signs it."""

    def send(case: Case, _authorization: str | None) -> Response:
        token = mint_token(TOKEN, case.method, unquote(case.formatted_path), actor="fuzzer")
        return case.call(url, headers={"Authorization": f"Bearer {token}"})

    return send


def _unsigned(url: str) -> Send:
    def send(case: Case, authorization: str | None) -> Response:
        headers = {} if authorization is None else {"Authorization": authorization}
        return case.call(url, headers=headers)

    return send


# What a client can put in a header: printable ASCII without blanks.
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)
_BAD_AUTHORIZATION = st.one_of(
    st.none(),
    _HEADER_TEXT,
    st.builds("Bearer {}".format, _HEADER_TEXT),
    st.builds("Bearer {}.{}.{}".format, _HEADER_TEXT, _HEADER_TEXT, _HEADER_TEXT),
    st.sampled_from([f"Bearer {TOKEN}", f"Basic {TOKEN}", "Bearer", "Bearer "]),
)
CONTROL = {"GET /v1/status", "GET /v1/positions", "GET /v1/decisions", "POST /v1/pause",
           "POST /v1/resume", "POST /v1/flatten", "GET /v1/flatten/{flatten_id}"}  # fmt: skip
PRODUCTS = ["BTC-USD", "ETH-USD", "SOL-USD"]


def _needs_token(operation: APIOperation) -> bool:
    return bool(operation.definition.raw.get("security"))


async def test_risk_control_api_answers_every_request_soundly(
    redis, redis_url, bus_keys, pg_url, pg_engine
):
    upgrade(pg_url)
    clock = SimulatedClock(datetime(2026, 5, 4, 9, 0, tzinfo=UTC))
    await seed_catalog(redis, bus_keys, clock)
    async with risk_service(redis_url, bus_keys, pg_engine, clock) as risk:
        url = str(risk.client.base_url)
        started = await risk.client.post("/v1/flatten", json={"reason": "a job to look up"})
        assert started.status_code == 202, started.text
        schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{url}/openapi.json")
        # The Authorization header is this test's to set: signed, missing or garbage.
        schema.config.generation.update(with_security_parameters=False)
        flatten_id = st.just(started.json()["flatten_id"])
        schema.hook("flatmap_path_parameters")(_or_known("flatten_id", flatten_id))
        products = st.lists(st.sampled_from(PRODUCTS), min_size=1, max_size=3, unique=True)
        schema.hook("flatmap_body")(_or_known("products", products))
        # Text Postgres cannot store, which the audit trail once failed on with a 500.
        schema.hook("flatmap_body")(_or_known("reason", st.sampled_from(["\x00", "stop\x00now"])))

        signed = await asyncio.to_thread(fuzz, schema, _signed(url), [*SOUND, token_accepted])
        refused = await asyncio.to_thread(
            fuzz, schema, _unsigned(url), [not_a_server_error, refused_as_unauthorized],
            authorization=_BAD_AUTHORIZATION, only=_needs_token,
        )  # fmt: skip
    assert CONTROL < set(signed) and set(refused) == CONTROL
