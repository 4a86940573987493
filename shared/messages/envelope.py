"""The JSON envelope every stream entry carries, and its strict decoding."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.clock import Clock
from shared.messages.payloads import (
    BookUpdated,
    CancelOrders,
    CandleClosed,
    IntentFinished,
    OrderFilled,
    OrderUpdated,
    Payload,
    PlaceOrder,
    ProposalDecided,
    TickUpdated,
    TradeProposed,
    TradingStateChanged,
)

__all__ = [
    "Envelope",
    "MalformedMessage",
    "MessageError",
    "MessageRegistry",
    "UnknownMessageType",
    "UnsupportedVersion",
    "decode",
    "encode",
    "new_envelope",
    "REGISTRY",
]

P = TypeVar("P", bound=Payload)
MAX_NS = 2**63 - 1  # the latest nanosecond a signed 64-bit timestamp holds (year 2262)


class MessageError(ValueError):
    """A stream entry that cannot be turned into a message. Never retried: dead-letter it."""


class MalformedMessage(MessageError):
    """Not JSON, not an envelope, or a payload that fails its schema."""


class UnknownMessageType(MessageError):
    """The envelope's ``type`` is not one this process knows."""


class UnsupportedVersion(MessageError):
    """The envelope's schema version ``v`` is newer than this process understands."""


class Envelope(BaseModel, Generic[P]):
    """``type``, schema version ``v``, unique ``id``, ``ts`` and ``origin_ts`` (ns), ``data``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    v: int = Field(ge=1)
    id: str = Field(min_length=1, max_length=128)
    ts: int = Field(ge=0, le=MAX_NS, description="When this envelope was created, ns since epoch.")
    origin_ts: int = Field(
        ge=0, le=MAX_NS,
        description="When the market-data event that started this chain happened, ns.",
    )  # fmt: skip
    data: P


class MessageRegistry:
    """Maps wire ``type`` to the payload model that parses it."""

    def __init__(self, payloads: Iterable[type[Payload]]) -> None:
        self._by_type: dict[str, type[Payload]] = {}
        for payload in payloads:
            if payload.TYPE in self._by_type:
                raise ValueError(f"message type {payload.TYPE!r} registered twice")
            self._by_type[payload.TYPE] = payload

    def model_for(self, type_name: str, version: int) -> type[Payload]:
        model = self._by_type.get(type_name)
        if model is None:
            raise UnknownMessageType(f"unknown message type {type_name!r}")
        if version > model.VERSION:
            raise UnsupportedVersion(
                f"{type_name} v{version} is newer than the supported v{model.VERSION}"
            )
        return model

    def types(self) -> list[str]:
        return sorted(self._by_type)


REGISTRY = MessageRegistry(
    [
        TickUpdated,
        CandleClosed,
        BookUpdated,
        TradeProposed,
        ProposalDecided,
        PlaceOrder,
        OrderUpdated,
        OrderFilled,
        CancelOrders,
        IntentFinished,
        TradingStateChanged,
    ]
)


def new_envelope(
    data: P, clock: Clock, *, origin_ts: int | None = None, message_id: str | None = None
) -> Envelope[P]:
    """Wrap ``data``; ``origin_ts`` defaults to now (a chain that starts here).

    Pass a deterministic ``message_id`` when the message is derived from another one, so
    a producer that redoes its work after a crash emits the same id and consumers dedupe it.
    """
    now = clock.now_ns()
    return Envelope[P](
        type=data.TYPE,
        v=data.VERSION,
        id=message_id or uuid.uuid4().hex,
        ts=now,
        origin_ts=now if origin_ts is None else origin_ts,
        data=data,
    )


def encode(envelope: Envelope[Any]) -> bytes:
    """Serialize to compact JSON; Decimals become strings."""
    return orjson.dumps(envelope.model_dump(mode="json"))


def decode(raw: bytes | str, registry: MessageRegistry = REGISTRY) -> Envelope[Payload]:
    """Parse and validate an entry; raises a :class:`MessageError` subclass, nothing else."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedMessage(f"envelope must be a JSON object, got {type(document).__name__}")
    type_name, version = document.get("type"), document.get("v")
    if not isinstance(type_name, str):
        raise MalformedMessage("envelope has no string 'type'")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedMessage("envelope has no integer 'v'")
    model = registry.model_for(type_name, version)
    try:
        return Envelope[model].model_validate(document)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise MalformedMessage(
            f"{type_name} v{version} fails its schema: {_summary(exc)}"
        ) from None


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join(str(item) for item in error["loc"]) or "<root>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
