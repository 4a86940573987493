"""Random and malformed entries on every stream signal, risk and execution consume.

The three services run as real processes (PAPER, real Redis and Postgres). A seeded set
of bad entries is written straight to each stream they read, with ``XADD``:

- entries that are no valid envelope: no field, random bytes, broken or non-UTF-8 JSON,
  JSON that is no object, unknown types and versions, envelope fields missing or out of
  range, and every payload field missing, of the wrong type, negative, NaN, a float,
  beyond any market or longer than the columns that store it;
- entries that decode but that no handler may act on: unknown products, another
  stream's type, numbers at the bounds, reports of intents nobody issued or of another
  mode, a candle whose bucket has not begun, proposals risk must reject and orders
  execution must refuse.

Afterwards each invalid entry is in ``dlq.<stream>`` once per group that read it, with
its reason and error; every other entry was acked without being dead-lettered, and the
rejections risk and execution answer with are published; no group holds anything
pending; each process still runs with the same pid and answers; signal, restarted,
rebuilds its strategies from the candles it handled; and valid messages afterwards go
all the way: signal proposes a breakout, risk approves it, execution fills it on the
paper venue, risk holds the position.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.risk.ctl import ControlAuth
from shared.bus import ENVELOPE_FIELD, BusKeys, Publisher
from shared.bus.dead_letter import REASONS
from shared.clock import LiveClock, SimulatedClock
from shared.db import upgrade
from shared.messages import (
    BookLevel,
    BookUpdated,
    CancelOrders,
    CandleClosed,
    DecisionOutcome,
    IntentFinished,
    IntentKind,
    Liquidity,
    LiquidityPreference,
    MessageError,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    Payload,
    PlaceOrder,
    ProposalAction,
    ProposalDecided,
    TickUpdated,
    TradeProposed,
    TradingMode,
    decode,
    new_envelope,
)
from shared.money import Side
from shared.products import LatestTicks
from tests.e2e.process import ServiceProcess
from tests.support.execution import orders_of
from tests.support.polling import eventually
from tests.support.risk import seed_catalog
from tests.support.venue import CONFIG_DIR

SEED = 20260504
PRODUCT = "BTC-USD"
TOKEN = "e2e-fuzz-control-token-7c41"
ENV = ENVELOPE_FIELD.encode()
GRANULARITY = 60
# Which group of which service reads each stream: every one of them is fuzzed.
CONSUMERS: dict[str, tuple[str, ...]] = {
    TickUpdated.STREAM: ("risk", "execution"),
    CandleClosed.STREAM: ("signal",),
    BookUpdated.STREAM: ("execution",),
    TradeProposed.STREAM: ("risk",),
    OrderFilled.STREAM: ("risk",),
    PlaceOrder.STREAM: ("execution",),
}
STRATEGIES = {
    "strategies": [
        {"name": "fuzz_breakout", "kind": "breakout", "products": [PRODUCT],
         "granularity_s": GRANULARITY, "quote_size_usd": 100,
         "params": {"donchian_period": 2, "atr_period": 2, "atr_stop_multiple": 2}},
        {"name": "fuzz_trend", "kind": "ema_cross", "products": ["ETH-USD"],
         "granularity_s": GRANULARITY, "quote_size_usd": 100,
         "params": {"fast_period": 2, "slow_period": 3, "atr_period": 2}},
    ]
}  # fmt: skip
# The longest of these fields the Postgres columns (and the envelope ids derived from them)
# hold: one longer would fail every write, on every redelivery.
STORED_LENGTHS = {"product_id": 32, "strategy": 64, "proposal_id": 100, "intent_id": 100}
LONGEST_PRODUCT = "P" * STORED_LENGTHS["product_id"]
LONGEST_STRATEGY = "s" * STORED_LENGTHS["strategy"]
LONGEST_PROPOSAL = "p" * STORED_LENGTHS["proposal_id"]
LONGEST_INTENT = "i" * STORED_LENGTHS["intent_id"]
HUGE, LARGE, TINY = "1E+999999999", "9.99E+29", "1E-60"  # beyond, and at, the bounds


@dataclass(frozen=True)
class Bad:
    """One entry to write; ``malformed``: it must be dead-lettered, else acked as a refusal."""

    label: str
    fields: dict[bytes, bytes]
    malformed: bool


# --- valid samples, the material of the mutations ----------------------------------------


def _samples(now: datetime) -> dict[str, list[Payload]]:
    """A valid payload of every type each consumed stream carries."""
    return {
        TickUpdated.STREAM: [TickUpdated(
            product_id=PRODUCT, best_bid=Decimal("49990"), best_bid_size=Decimal("1"),
            best_ask=Decimal("50010"), best_ask_size=Decimal("1"), last_price=Decimal("50000"),
            last_size=Decimal("0.1"), exchange_time=now,
        )],
        CandleClosed.STREAM: [CandleClosed(
            product_id=PRODUCT, granularity_s=GRANULARITY, start=now - timedelta(days=2),
            open=Decimal("50000"), high=Decimal("50100"), low=Decimal("49900"),
            close=Decimal("50050"), volume=Decimal("3"),
        )],
        BookUpdated.STREAM: [BookUpdated(
            product_id=PRODUCT, bids=(BookLevel(price=Decimal("49990"), size=Decimal("1")),),
            asks=(BookLevel(price=Decimal("50010"), size=Decimal("1")),), exchange_time=now,
        )],
        TradeProposed.STREAM: [TradeProposed(
            proposal_id="fuzz-sample", strategy="fuzz", product_id=PRODUCT, side=Side.BUY,
            action=ProposalAction.ENTRY, quote_size=Decimal("100"),
            reference_mid=Decimal("50000"), stop_loss=Decimal("49000"),
            take_profit=Decimal("52000"), decided_at=now,
        )],
        PlaceOrder.STREAM: [
            PlaceOrder(
                intent_id="fuzz-sample", kind=IntentKind.ENTRY, product_id=PRODUCT,
                side=Side.BUY, quote_size=Decimal("100"), reference_mid=Decimal("50000"),
                liquidity=LiquidityPreference.MAKER_FIRST, issued_at=now,
            ),
            CancelOrders(command_id="fuzz-sample", kinds=(IntentKind.ENTRY,), reason="fuzz",
                         issued_at=now),
        ],
        OrderFilled.STREAM: [
            OrderFilled(
                client_order_id="fuzz-sample", intent_id="fuzz-sample", trade_id="fuzz-sample",
                product_id=PRODUCT, side=Side.BUY, price=Decimal("50000"),
                size=Decimal("0.001"), fee=Decimal("0.3"), liquidity=Liquidity.MAKER,
                arrival_mid=Decimal("50000"), mode=TradingMode.PAPER, filled_at=now,
            ),
            IntentFinished(
                intent_id="fuzz-sample", kind=IntentKind.ENTRY, product_id=PRODUCT,
                side=Side.BUY, status=OrderStatus.FILLED, filled_base=Decimal("0.001"),
                filled_quote=Decimal("50"), mode=TradingMode.PAPER, finished_at=now,
            ),
            OrderUpdated(
                client_order_id="fuzz-sample", intent_id="fuzz-sample", product_id=PRODUCT,
                side=Side.BUY, status=OrderStatus.OPEN, filled_size=Decimal(0),
                mode=TradingMode.PAPER, updated_at=now,
            ),
        ],
    }  # fmt: skip


def _document(payload: Payload, rng: random.Random, now: datetime) -> dict[str, Any]:
    """The JSON envelope of ``payload`` with an id of its own."""
    message_id = f"fuzz-{rng.getrandbits(64):x}"
    envelope = new_envelope(payload, SimulatedClock(now), message_id=message_id)
    document: dict[str, Any] = orjson.loads(orjson.dumps(envelope.model_dump(mode="json")))
    return document


def _raw(document: Any) -> dict[bytes, bytes]:
    return {ENV: orjson.dumps(document)}


# --- entries that are no valid envelope ---------------------------------------------------


def _not_envelopes(rng: random.Random, document: dict[str, Any]) -> Iterator[Bad]:
    raw = orjson.dumps(document)
    yield Bad("no envelope field", {b"payload": raw}, True)
    yield Bad("empty envelope", {ENV: b""}, True)
    for n in range(3):
        yield Bad(f"random bytes {n}", {ENV: rng.randbytes(rng.randint(1, 96))}, True)
    yield Bad("truncated JSON", {ENV: raw[: rng.randint(1, len(raw) - 2)]}, True)
    yield Bad("trailing garbage", {ENV: raw + b"}"}, True)
    type_text = orjson.dumps(document["type"])
    yield Bad("non-UTF-8 type", {ENV: raw.replace(type_text, b'"\xff\xfe\xfd"', 1)}, True)
    yield Bad("lone surrogate", {ENV: raw.replace(type_text, b'"\\ud800"', 1)}, True)
    for value in ([document], 42, "envelope", None, True):
        yield Bad(f"JSON {type(value).__name__}", _raw(value), True)


def _envelope_mutations(rng: random.Random, document: dict[str, Any]) -> Iterator[Bad]:
    changes: list[tuple[str, str, Any]] = [
        ("type", "missing", ...), ("type", "number", 7),
        ("type", "unknown", "Bogus" + "".join(rng.choices("abcdefgh", k=6))),
        ("type", "another stream's type with this data", _other_type(document["type"])),
        ("v", "missing", ...), ("v", "zero", 0), ("v", "newer", 2), ("v", "text", "1"),
        ("v", "fraction", 1.5), ("v", "boolean", True), ("v", "negative", -1),
        ("id", "missing", ...), ("id", "empty", ""), ("id", "too long", "i" * 129),
        ("id", "number", 5), ("ts", "missing", ...), ("ts", "negative", -1),
        ("ts", "text", "now"), ("ts", "a float past 2262", 1e30),
        ("origin_ts", "negative", -5), ("origin_ts", "past 2262", 2**63),
        ("origin_ts", "missing", ...),
        ("data", "missing", ...), ("data", "list", []), ("data", "null", None),
        ("data", "text", "payload"), ("extra", "unknown key", {"x": 1}),
    ]  # fmt: skip
    for key, what, value in changes:
        mutated = dict(document)
        if value is ...:
            mutated.pop(key)
        else:
            mutated[key] = value
        yield Bad(f"envelope {key}: {what}", _raw(mutated), True)


def _other_type(type_name: str) -> str:
    return "PlaceOrder" if type_name != "PlaceOrder" else "TickUpdated"


def _payload_mutations(document: dict[str, Any], model: type[Payload]) -> Iterator[Bad]:
    """Every field broken in a way its schema refuses, and the model's own rules broken."""
    for name, info in model.model_fields.items():
        broken: list[tuple[str, Any]] = [("an object", {"nested": [1, 2]})]
        if info.is_required():
            broken.append(("missing", ...))
        if _is_decimal(info.annotation):
            broken += [("NaN", "NaN"), ("infinity", "-Infinity"), ("negative", "-1"),
                       ("a float", 1.5), ("not a number", "12abc"), ("sNaN", "sNaN"),
                       ("beyond any market", HUGE), ("finer than any market", "1E-61")]  # fmt: skip
        if name in STORED_LENGTHS:
            broken.append(
                ("longer than risk and execution store", "x" * (STORED_LENGTHS[name] + 1))
            )
        if _is_datetime(info.annotation):
            broken += [("a number", 1_700_000_000), ("naive", "2026-05-04T09:00:00"),
                       ("not a date", "yesterday")]  # fmt: skip
        for label, value in broken:
            yield _with_data(document, f"{model.TYPE}.{name}: {label}", {name: value})
    yield _with_data(document, f"{model.TYPE}: unknown field", {"extra_field": "x"})
    for label, change in _rule_breaks(model):
        yield _with_data(document, f"{model.TYPE}: {label}", change)


def _rule_breaks(model: type[Payload]) -> list[tuple[str, dict[str, Any]]]:
    """Fields each valid alone, together breaking a rule of the model."""
    if model is TickUpdated:
        return [("crossed quote", {"best_bid": "50020", "best_ask": "50010"})]
    if model is CandleClosed:
        return [("low above high", {"low": "50200"}), ("granularity zero", {"granularity_s": 0})]
    if model is BookUpdated:
        level = {"price": "49980", "size": "1"}
        return [("bids ascending", {"bids": [level, {"price": "49990", "size": "1"}]}),
                ("crossed book", {"bids": [{"price": "50020", "size": "1"}]}),
                ("zero size level", {"asks": [{"price": "50010", "size": "0"}]})]  # fmt: skip
    if model is TradeProposed:
        return [("stop above take", {"stop_loss": "53000"}), ("side HOLD", {"side": "HOLD"})]
    if model is PlaceOrder:
        return [("both sizes", {"base_size": "0.1"}), ("no size", {"quote_size": None}),
                ("kind unknown", {"kind": "MAYBE"})]  # fmt: skip
    if model is CancelOrders:
        return [("no kinds", {"kinds": []})]
    if model is IntentFinished:
        return [("finished while open", {"status": "OPEN"}), ("mode DEMO", {"mode": "DEMO"})]
    if model is OrderFilled:
        return [("liquidity unknown", {"liquidity": "BOTH"}), ("zero size", {"size": "0"})]
    if model is OrderUpdated:
        return [("status unknown", {"status": "LOST"})]
    return []


def _is_decimal(annotation: Any) -> bool:
    return "Decimal" in repr(annotation)


def _is_datetime(annotation: Any) -> bool:
    return "datetime" in repr(annotation)


def _with_data(document: dict[str, Any], label: str, change: dict[str, Any]) -> Bad:
    data = dict(document["data"])
    for key, value in change.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return Bad(label, _raw({**document, "data": data}), True)


# --- entries that decode but that the handlers must refuse --------------------------------

WRONG_PRODUCTS = (
    "NOPE-USD",
    "",
    LONGEST_PRODUCT,
    "btc-usd",
    "BTC-USD\x00",
    "ETH-USD ",
)


def _decodable(stream: str, rng: random.Random, now: datetime) -> list[tuple[str, Payload]]:
    """Payloads that pass their schema and carry nothing a handler may act on."""
    samples = _samples(now)
    tick, candle, book = (samples[s][0] for s in (TickUpdated.STREAM, CandleClosed.STREAM,
                                                  BookUpdated.STREAM))  # fmt: skip
    assert isinstance(tick, TickUpdated) and isinstance(candle, CandleClosed)
    assert isinstance(book, BookUpdated)
    if stream == TickUpdated.STREAM:
        return [
            *[(f"tick for {p!r}", tick.model_copy(update={"product_id": p}))
              for p in WRONG_PRODUCTS],
            ("tick at the bounds", tick.model_copy(update={
                "product_id": "NOPE-USD", "best_bid": Decimal(TINY), "best_ask": Decimal(LARGE),
                "best_bid_size": Decimal(LARGE), "last_price": Decimal(LARGE),
                "last_size": Decimal(TINY)})),
            ("an order on the tick stream", samples[PlaceOrder.STREAM][0]),
        ]  # fmt: skip
    if stream == CandleClosed.STREAM:
        history = now - timedelta(days=rng.randint(100, 400))
        return [
            *[(f"candle for {p!r}", candle.model_copy(update={"product_id": p}))
              for p in WRONG_PRODUCTS],
            ("candle of an unused granularity", candle.model_copy(
                update={"granularity_s": rng.choice([7, 61, 999_999])})),
            # a traded route, long ago: indicators take the extremes, nothing is proposed
            ("candle at the bounds", candle.model_copy(update={
                "product_id": "ETH-USD", "start": history, "open": Decimal(TINY),
                "high": Decimal(LARGE), "low": Decimal(TINY), "close": Decimal(LARGE),
                "volume": Decimal(LARGE)})),
            # a bucket that has not begun: no venue made it, and later candles must count
            ("candle from the future", candle.model_copy(
                update={"start": now + timedelta(days=rng.randint(1, 30_000))})),
            ("a tick on the candle stream", tick),
        ]  # fmt: skip
    if stream == BookUpdated.STREAM:
        return [
            *[(f"book for {p!r}", book.model_copy(update={"product_id": p}))
              for p in WRONG_PRODUCTS],
            ("book at the bounds", book.model_copy(update={
                "product_id": "NOPE-USD", "bids": (BookLevel(price=Decimal(TINY),
                                                             size=Decimal(LARGE)),),
                "asks": (BookLevel(price=Decimal(LARGE), size=Decimal(TINY)),)})),
            ("a candle on the book stream", candle),
        ]  # fmt: skip
    if stream == TradeProposed.STREAM:
        return [(label, proposal) for label, proposal, _reason in _refused_proposals(now)]
    if stream == PlaceOrder.STREAM:
        return [(label, order) for label, order, _reason in _refused_orders(now)] + [
            ("cancel for an unknown product", CancelOrders(
                command_id=f"fuzz-cancel-{rng.getrandbits(32)}", product_ids=("NOPE-USD",),
                kinds=(IntentKind.ENTRY, IntentKind.EXIT), reason="fuzz", issued_at=now)),
            ("cancel of flattens nobody runs", CancelOrders(
                command_id="c" * 500, product_ids=(LONGEST_PRODUCT,), kinds=(IntentKind.FLATTEN,),
                reason="r" * 2000, issued_at=now)),
            ("a tick on the order stream", tick),
        ]  # fmt: skip
    assert stream == OrderFilled.STREAM
    fill, finished, updated = samples[OrderFilled.STREAM]
    return [
        ("fill of an intent risk never issued", fill.model_copy(
            update={"trade_id": "fuzz-stray", "intent_id": "fuzz-stray"})),
        ("fill of another mode", fill.model_copy(update={
            "mode": TradingMode.LIVE, "trade_id": "fuzz-live", "intent_id": "fuzz-live"})),
        ("finish of an unknown intent", finished.model_copy(update={"intent_id": "fuzz-nope"})),
        ("finish of another mode", finished.model_copy(update={"mode": TradingMode.LIVE})),
        ("finish of the longest intent id",
         finished.model_copy(update={"intent_id": LONGEST_INTENT})),
        ("order update", updated),
        ("a book on the report stream", book),
    ]  # fmt: skip


def _refused_proposals(now: datetime) -> list[tuple[str, TradeProposed, str]]:
    """Proposals risk must reject, and the reason it must give."""
    base = _samples(now)[TradeProposed.STREAM][0]
    assert isinstance(base, TradeProposed)
    sell = {"side": Side.SELL}

    def proposal(n: int, **update: Any) -> TradeProposed:
        return base.model_copy(update={"proposal_id": f"fuzz-proposal-{n}", **update})

    return [
        ("entry on an unknown product", proposal(1, product_id="NOPE-USD"),
         "product_not_in_universe"),
        ("entry on the longest product id", proposal(2, product_id=LONGEST_PRODUCT),
         "product_not_in_universe"),
        ("sell entry", proposal(3, **sell), "unsupported_side"),
        ("exit with nothing held", proposal(4, action=ProposalAction.EXIT, **sell),
         "nothing_held"),
        ("stale entry", proposal(5, decided_at=now - timedelta(days=400)), "stale_proposal"),
        ("sell entry at the bounds", proposal(6, quote_size=Decimal(LARGE),
                                              reference_mid=Decimal(TINY), stop_loss=None,
                                              take_profit=None, **sell), "unsupported_side"),
        ("the longest strategy name", proposal(7, strategy=LONGEST_STRATEGY, **sell),
         "unsupported_side"),
        ("the longest proposal id", proposal(8, proposal_id=LONGEST_PROPOSAL, **sell),
         "unsupported_side"),
    ]  # fmt: skip


def _refused_orders(now: datetime) -> list[tuple[str, PlaceOrder, str]]:
    """Orders execution must refuse, and the reason its ``IntentFinished`` must give."""
    base = _samples(now)[PlaceOrder.STREAM][0]
    assert isinstance(base, PlaceOrder)

    def order(n: int, **update: Any) -> PlaceOrder:
        return base.model_copy(update={"intent_id": f"fuzz-order-{n}", **update})

    return [
        ("order on an unknown product", order(1, product_id="NOPE-USD"), "product_unknown"),
        ("order on the longest product id", order(2, product_id=LONGEST_PRODUCT),
         "product_unknown"),
        ("order with the longest intent id", order(3, intent_id=LONGEST_INTENT,
                                                   product_id="NOPE-USD"), "product_unknown"),
        ("order at the bounds on an unknown product", order(
            4, product_id="NOPE-USD", quote_size=Decimal(LARGE), reference_mid=Decimal(TINY)),
         "product_unknown"),
        ("exit larger than the venue takes", order(
            5, kind=IntentKind.EXIT, side=Side.SELL, product_id="ETH-USD", quote_size=None,
            base_size=Decimal(LARGE), liquidity=LiquidityPreference.TAKER),
         "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE"),
    ]  # fmt: skip


def fuzz_entries(stream: str, rng: random.Random, now: datetime) -> list[Bad]:
    """Everything written to ``stream``, in a seeded random order."""
    entries: list[Bad] = []
    for sample in _samples(now)[stream]:
        document = _document(sample, rng, now)
        entries += _not_envelopes(rng, document)
        entries += _envelope_mutations(rng, document)
        entries += _payload_mutations(document, type(sample))
    for label, payload in _decodable(stream, rng, now):
        entries.append(Bad(label, _raw(_document(payload, rng, now)), False))
    rng.shuffle(entries)
    return entries


# --- the test --------------------------------------------------------------------------

Written = dict[str, list[tuple[str, Bad]]]  # stream -> (entry id, entry), in order


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The shipped config with fast strategies, and entries going taker after half a second."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    (target / "strategies.yaml").write_text(yaml.safe_dump(STRATEGIES))
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["execution"]["maker_wait_ttl_s"] = 0.5
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    return target


@pytest.fixture
def services(redis_url, pg_url, bus_keys, config_dir, processes) -> dict[str, ServiceProcess]:
    upgrade(pg_url)
    common = {
        "REDIS_URL": redis_url, "DATABASE_URL": pg_url, "BUS_PREFIX": bus_keys.prefix,
        "CONFIG_DIR": str(config_dir), "SHUTDOWN_GRACE_S": "5",
    }  # fmt: skip
    envs = {
        "signal": common,
        "risk": {**common, "CONTROL_API_TOKEN": TOKEN, "RISK_SUPERVISE_INTERVAL_S": "0.2"},
        "execution": {**common, "EXEC_PAPER_LATENCY_MS": "0", "EXEC_TIMER_INTERVAL_S": "0.05"},
    }  # fmt: skip
    started = {name: ServiceProcess(f"services.{name}", env) for name, env in envs.items()}
    processes.extend(started.values())
    return started


async def test_bad_entries_on_every_consumed_stream_are_dead_lettered_or_refused_and_nothing_stops(
    services: dict[str, ServiceProcess], processes: list[ServiceProcess], redis: Redis,
    bus_keys: BusKeys, pg_engine: AsyncEngine,
) -> None:  # fmt: skip
    clock = LiveClock()
    await seed_catalog(redis, bus_keys, SimulatedClock(clock.now()))
    for service in services.values():
        service.start()
    for service in services.values():
        await service.wait_ready()
    pids = {name: _pid(service) for name, service in services.items()}
    await eventually(lambda: _groups_exist(redis, bus_keys), what="every consumer group")

    written = await _write_fuzz(redis, bus_keys, clock)
    await _assert_dead_lettered_or_acked(redis, bus_keys, written)
    await _assert_refusals(redis, bus_keys, clock)
    for name, service in services.items():
        assert _pid(service) == pids[name], f"{name} restarted:\n{service.log()}"
        assert (await service.get("/healthz")).status_code == 200
        ready = await service.get("/readyz")
        assert ready.status_code == 200, ready.text
    assert await _consumed_streams(redis, bus_keys) == {
        (stream, group) for stream, groups in CONSUMERS.items() for group in groups
    }, "a stream is consumed that this test does not fuzz"

    assert "candle refused: its bucket has not begun" in services["signal"].log()
    assert "fill refused: risk never issued its intent" in services["risk"].log()
    # signal rebuilds its strategies from every candle it handled, the fuzz's among them
    services["signal"].signal(signal.SIGTERM)
    assert services["signal"].wait_exit() == 0
    services["signal"] = ServiceProcess("services.signal", services["signal"].env).start()
    processes.append(services["signal"])
    await services["signal"].wait_ready()
    await _a_breakout_still_trades(services["risk"], redis, bus_keys, pg_engine, clock)


def _pid(service: ServiceProcess) -> int:
    assert service.process is not None and service.process.poll() is None, service.log()
    return service.process.pid


async def _write_fuzz(redis: Redis, keys: BusKeys, clock: LiveClock) -> Written:
    rng = random.Random(SEED)
    written: Written = {}
    for stream in CONSUMERS:
        written[stream] = []
        for bad in fuzz_entries(stream, rng, clock.now()):
            entry_id = await redis.xadd(keys.stream(stream), bad.fields)
            written[stream].append((entry_id.decode(), bad))
    return written


async def _assert_dead_lettered_or_acked(redis: Redis, keys: BusKeys, written: Written) -> None:
    """Malformed: in ``dlq.<stream>`` once per group, with a reason; the rest acked only."""
    labels = {entry_id: bad.label for entries in written.values() for entry_id, bad in entries}
    try:
        await eventually(lambda: _all_acked(redis, keys), within=20, what="every entry acked")
    except AssertionError:
        raise AssertionError(await _backlog(redis, keys, labels)) from None
    for stream, entries in written.items():
        letters = await _dead_letters(redis, keys, stream)
        for group in CONSUMERS[stream]:
            for entry_id, bad in entries:
                letter = letters.get((entry_id, group))
                where = f"{stream} ({group}): {bad.label}"
                if bad.malformed:
                    assert letter is not None, f"{where} was not dead-lettered"
                    assert letter["reason"] == "malformed" and letter["error"], letter
                else:
                    assert letter is None, f"{where} was dead-lettered: {letter}"
        assert all(letter["reason"] in REASONS for letter in letters.values())
        assert len(letters) == sum(bad.malformed for _id, bad in entries) * len(CONSUMERS[stream])


async def _groups_exist(redis: Redis, keys: BusKeys) -> bool:
    return await _consumed_streams(redis, keys) >= {
        (stream, group) for stream, groups in CONSUMERS.items() for group in groups
    }


async def _consumed_streams(redis: Redis, keys: BusKeys) -> set[tuple[str, str]]:
    """Every (stream, group) under this test's prefix."""
    found = set()
    async for key in redis.scan_iter(match=f"{keys.prefix}*", _type="stream"):
        for group in await redis.xinfo_groups(key):
            found.add((key.decode().removeprefix(keys.prefix), group["name"].decode()))
    return found


async def _all_acked(redis: Redis, keys: BusKeys) -> bool:
    for stream, groups in CONSUMERS.items():
        info = {g["name"].decode(): g for g in await redis.xinfo_groups(keys.stream(stream))}
        if any(info[group]["pending"] or info[group]["lag"] for group in groups):
            return False
    return True


async def _backlog(redis: Redis, keys: BusKeys, labels: dict[str, str]) -> str:
    """What each group still holds, and the last error of each entry it failed on."""
    lines = []
    for stream, groups in CONSUMERS.items():
        info = {g["name"].decode(): g for g in await redis.xinfo_groups(keys.stream(stream))}
        for group in groups:
            lines.append(f"{stream} {group}: pending {info[group]['pending']}, "
                         f"lag {info[group]['lag']}")  # fmt: skip
            errors = await redis.hgetall(keys.errors(stream, group))
            for entry_id, error in errors.items():
                label = labels.get(entry_id.decode(), entry_id.decode())
                lines.append(f"  {label}: {error.decode(errors='replace')[:300]}")
    return "\n".join(lines)


async def _dead_letters(
    redis: Redis, keys: BusKeys, stream: str
) -> dict[tuple[str, str], dict[str, str]]:
    """``dlq.<stream>`` by (source entry id, group)."""
    letters = {}
    for _entry_id, fields in await redis.xrange(keys.dead_letter(stream)):
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        letters[(text["source_id"], text["group"])] = text
    return letters


async def _payloads(redis: Redis, keys: BusKeys, stream: str) -> list[Payload]:
    """The payloads of ``stream`` that decode, oldest first: the fuzz's own are there too."""
    payloads = []
    for _entry_id, fields in await redis.xrange(keys.stream(stream)):
        with contextlib.suppress(MessageError):
            payloads.append(decode(fields.get(ENV, b"")).data)
    return payloads


async def _assert_refusals(redis: Redis, keys: BusKeys, clock: LiveClock) -> None:
    """Risk rejected each bad proposal, and execution each bad order, saying why."""
    now = clock.now()
    decisions = {
        p.proposal_id: p
        for p in await _payloads(redis, keys, ProposalDecided.STREAM)
        if isinstance(p, ProposalDecided)
    }
    for label, proposal, reason in _refused_proposals(now):
        decision = decisions.get(proposal.proposal_id)
        assert decision is not None, f"no decision on the {label}"
        assert decision.outcome is DecisionOutcome.REJECTED, (label, decision)
        assert reason in decision.reasons, (label, decision)
    finished = {
        p.intent_id: p
        for p in await _payloads(redis, keys, IntentFinished.STREAM)
        if isinstance(p, IntentFinished)
    }
    for label, order, reason in _refused_orders(now):
        report = finished.get(order.intent_id)
        assert report is not None, f"no report on the {label}"
        assert report.status is OrderStatus.REJECTED and report.reason == reason, (label, report)


async def _a_breakout_still_trades(
    risk: ServiceProcess, redis: Redis, keys: BusKeys, database: AsyncEngine, clock: LiveClock
) -> None:
    """Valid book, tick and candles after the bad ones: each consumer acts on them.

    signal proposes at the tick's mid, not the candle's close; execution rests the entry
    at the tick's bid, then takes the book's ask; risk holds the fill, marked at the mid.
    """
    publisher = Publisher(redis, keys=keys)

    async def publish(payload: Payload) -> None:
        await publisher.publish(new_envelope(payload, clock))

    now = clock.now()
    await publish(BookUpdated(
        product_id=PRODUCT, bids=(BookLevel(price=Decimal("49990"), size=Decimal("1")),),
        asks=(BookLevel(price=Decimal("50010"), size=Decimal("1")),), exchange_time=now,
    ))  # fmt: skip
    tick = TickUpdated(
        product_id=PRODUCT, best_bid=Decimal("49990"), best_bid_size=Decimal("1"),
        best_ask=Decimal("50010"), best_ask_size=Decimal("1"), exchange_time=now,
    )  # fmt: skip
    # as market-data publishes a tick: on the stream, and as its product's latest
    await publisher.publish(new_envelope(tick, clock),
                            latest_in=(LatestTicks(redis, keys.prefix).key, PRODUCT))  # fmt: skip
    last_start = now.replace(second=0, microsecond=0) - timedelta(seconds=GRANULARITY)
    closes = ["49000", "49100", "49050", "49020", "50100"]  # the last breaks out
    for n, close in enumerate(closes):
        start = last_start - timedelta(seconds=GRANULARITY * (len(closes) - 1 - n))
        value = Decimal(close)
        await publish(CandleClosed(
            product_id=PRODUCT, granularity_s=GRANULARITY, start=start, open=value - 10,
            high=value + 10, low=value - 20, close=value, volume=Decimal("2"),
        ))  # fmt: skip

    async def of_type(stream: str, kind: type[Payload], **match: Any) -> list[Any]:
        return [p for p in await _payloads(redis, keys, stream) if isinstance(p, kind)
                and all(getattr(p, k, None) == v for k, v in match.items())]  # fmt: skip

    [proposal] = await eventually(
        lambda: of_type(TradeProposed.STREAM, TradeProposed, strategy="fuzz_breakout"),
        what="signal to propose the breakout",
    )
    assert proposal.reference_mid == Decimal("50000")
    [decision] = await eventually(
        lambda: of_type(ProposalDecided.STREAM, ProposalDecided,
                        proposal_id=proposal.proposal_id),
        what="risk to decide the breakout",
    )  # fmt: skip
    assert decision.outcome is DecisionOutcome.APPROVED, decision
    try:
        [fill] = await eventually(
            lambda: of_type(OrderFilled.STREAM, OrderFilled, intent_id=proposal.proposal_id),
            what="execution to fill the entry",
        )
    except AssertionError as exc:
        reports = await of_type(OrderFilled.STREAM, Payload, intent_id=proposal.proposal_id)
        raise AssertionError(f"{exc}; execution reported {reports}") from None
    assert (fill.price, fill.liquidity) == (Decimal("50010"), Liquidity.TAKER)
    maker, _taker = await orders_of(database, proposal.proposal_id)
    assert maker.post_only and maker.limit_price == Decimal("49990")

    async def held() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(
            base_url=risk.base_url, timeout=5, auth=ControlAuth(TOKEN, "fuzz")
        ) as client:
            positions = (await client.get("/v1/positions")).json()
        return [p for p in positions if p["product_id"] == PRODUCT]  # fmt: skip

    [position] = await eventually(held, what="risk to hold the entry")
    assert Decimal(position["base"]) == fill.size and Decimal(position["mark"]) == 50000
