"""Rebuilding strategy state after a restart, from the candles the group already handled.

Everything up to the group's last-delivered entry, except entries still pending (they
are handled again, live, by the consumer), is fed to the engine with its signals thrown
away: they were published before. The engine then stands exactly where it stood when
the last acknowledged candle was handled.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.signal.engine import SignalEngine
from shared.bus import ENVELOPE_FIELD, BusKeys
from shared.bus.keys import text
from shared.candle_files import Candle
from shared.logging import get_logger
from shared.messages import CandleClosed, MessageError, decode

__all__ = ["begun", "candle_of", "rebuild_from_stream"]

_log = get_logger("signal.rebuild")
_PAGE = 1000


def candle_of(payload: CandleClosed) -> Candle:
    return Candle(
        int(payload.start.timestamp()), payload.low, payload.high, payload.open,
        payload.close, payload.volume,
    )  # fmt: skip


def begun(payload: CandleClosed, now: datetime) -> bool:
    """Whether the candle's bucket has begun by ``now``. One that has not comes from no
    venue; fed to the strategies, it would make every real candle after it look stale."""
    return payload.start <= now


async def rebuild_from_stream(
    redis: Redis, keys: BusKeys, group: str, engine: SignalEngine, now: datetime
) -> int:
    """Replay the group's handled candles into ``engine``, as the live handler took them
    at ``now``; returns how many were fed."""
    stream = keys.stream(CandleClosed.STREAM)
    last_delivered = await _last_delivered(redis, stream, group)
    if last_delivered is None:
        return 0
    pending = await _pending_ids(redis, stream, group)
    fed, start = 0, "-"
    while True:
        page = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await redis.xrange(stream, min=start, max=last_delivered, count=_PAGE),
        )
        for entry_id, fields in page:
            if text(entry_id) in pending:
                continue
            fed += _feed(engine, fields.get(ENVELOPE_FIELD.encode()), now)
        if len(page) < _PAGE:
            break
        start = "(" + text(page[-1][0])
    _log.info("strategy state rebuilt", candles=fed, up_to=last_delivered, pending=len(pending))
    return fed


def _feed(engine: SignalEngine, raw: bytes | None, now: datetime) -> int:
    if raw is None:
        return 0
    try:
        envelope = decode(raw)
    except MessageError:
        return 0  # it was dead-lettered when first read
    payload = envelope.data
    if not isinstance(payload, CandleClosed) or not begun(payload, now):
        return 0
    engine.on_candle(payload.product_id, payload.granularity_s, candle_of(payload))
    return 1


async def _last_delivered(redis: Redis, stream: str, group: str) -> str | None:
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None  # no stream yet
    for info in groups:
        if text(info["name"]) == group:
            last = text(info["last-delivered-id"])
            return None if last == "0-0" else last
    return None


async def _pending_ids(redis: Redis, stream: str, group: str) -> set[str]:
    pending: set[str] = set()
    start = "-"
    while True:
        rows = await redis.xpending_range(stream, group, min=start, max="+", count=_PAGE)
        pending.update(text(row["message_id"]) for row in rows)
        if len(rows) < _PAGE:
            return pending
        start = "(" + text(rows[-1]["message_id"])
