from datetime import datetime
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.clock import SimulatedClock
from shared.messages import (
    REGISTRY,
    MalformedMessage,
    MessageError,
    TickUpdated,
    UnknownMessageType,
    UnsupportedVersion,
    decode,
    encode,
    new_envelope,
)
from tests.support.samples import AT, every_payload, tick

CLOCK = SimulatedClock(AT)


@pytest.mark.parametrize("payload", every_payload(), ids=lambda p: p.TYPE)
def test_every_payload_round_trips_exactly(payload):
    envelope = new_envelope(payload, CLOCK, origin_ts=123)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert type(decoded.data) is type(payload)
    assert decoded.origin_ts == 123 and decoded.ts == CLOCK.now_ns()


def test_every_stream_of_the_design_has_a_message():
    streams = {REGISTRY.model_for(name, 1).STREAM for name in REGISTRY.types()}
    assert streams == {
        "md.ticks", "md.candles", "md.books", "signal.proposals",
        "risk.decisions", "risk.orders", "risk.control", "exec.reports",
    }  # fmt: skip


def test_decimals_travel_as_strings_with_their_exact_digits():
    document = orjson.loads(encode(new_envelope(tick(), CLOCK)))
    assert document["data"]["best_bid_size"] == "0.51000000"
    assert document["data"]["exchange_time"] == "2026-03-01T12:00:00.123456Z"
    assert set(document) == {"type", "v", "id", "ts", "origin_ts", "data"}


decimal_text = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), allow_nan=False, places=8
).map(str)


@given(bid=decimal_text, spread=decimal_text)
def test_any_decimal_round_trips_digit_for_digit(bid, spread):
    ask = str(Decimal(bid) + Decimal(spread))
    envelope = new_envelope(tick(bid=bid, ask=ask), CLOCK)
    data = decode(encode(envelope)).data
    assert str(data.best_bid) == bid and str(data.best_ask) == ask


def _raw(**changes):
    document = orjson.loads(encode(new_envelope(tick(), CLOCK)))
    for key, value in changes.items():
        if key.startswith("data_"):
            document["data"][key[5:]] = value
        else:
            document[key] = value
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        (b"not json {", MalformedMessage, "not JSON"),
        (b"[1, 2]", MalformedMessage, "JSON object"),
        (b'{"v": 1}', MalformedMessage, "'type'"),
        (_raw(v="1"), MalformedMessage, "'v'"),
        (_raw(type="Teleported"), UnknownMessageType, "Teleported"),
        (_raw(v=2), UnsupportedVersion, "newer than the supported v1"),
        (_raw(data_best_bid=64000.01), MalformedMessage, "data.best_bid"),
        (_raw(data_best_bid="64001", data_best_ask="64000"), MalformedMessage, "crossed"),
        (_raw(data_exchange_time="2026-03-01T12:00:00"), MalformedMessage, "exchange_time"),
        (_raw(data_surprise=1), MalformedMessage, "surprise"),
        (_raw(id=""), MalformedMessage, "id"),
        (_raw(data_exchange_time=1700000000), MalformedMessage, "ISO 8601"),
        (_raw(data_exchange_time="9999-12-31T23:59:59-01:00"), MalformedMessage, "out of range"),
    ],
)
def test_bad_entries_raise_one_typed_error_with_a_reason(raw, error, words):
    with pytest.raises(error, match=words) as caught:
        decode(raw)
    assert isinstance(caught.value, MessageError)


def test_floats_and_naive_times_are_refused_at_construction():
    document = tick().model_dump()
    with pytest.raises(ValidationError, match="float"):
        TickUpdated.model_validate({**document, "best_bid": 0.5})
    with pytest.raises(ValidationError, match="naive"):
        TickUpdated(
            product_id="BTC-USD", best_bid=Decimal(1), best_bid_size=Decimal(1),
            best_ask=Decimal(2), best_ask_size=Decimal(1),
            exchange_time=datetime(2026, 1, 1),  # noqa: DTZ001 - the point of the test
        )  # fmt: skip


def test_envelope_ids_are_unique_unless_given():
    first, second = new_envelope(tick(), CLOCK), new_envelope(tick(), CLOCK)
    assert first.id != second.id
    assert new_envelope(tick(), CLOCK, message_id="derived-1").id == "derived-1"
