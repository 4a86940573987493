"""The risk service over real Redis and Postgres, driven through its streams and its API."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import yaml
from sqlalchemy import select

from services.risk.control_auth import mint_token
from services.risk.store import RiskStore
from shared.bus import Publisher
from shared.clock import SimulatedClock
from shared.db import ControlAction, RiskDecision, upgrade
from shared.messages import (
    CancelOrders,
    DecisionOutcome,
    IntentKind,
    PlaceOrder,
    ProposalAction,
    ProposalDecided,
    TickUpdated,
    TradeProposed,
    TradingStateChanged,
    new_envelope,
)
from shared.money import Side
from tests.support.polling import eventually, metric
from tests.support.risk import (
    TOKEN,
    FakeExecution,
    risk_service,
    seed_catalog,
    store_taker_fill,
    stream_payloads,
)
from tests.support.venue import CONFIG_DIR

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
PRICES = {"BTC-USD": Decimal("60000"), "ETH-USD": Decimal("3000"), "SOL-USD": Decimal("150")}


@pytest.fixture
async def stack(redis, redis_url, bus_keys, pg_url, pg_engine):
    upgrade(pg_url)
    clock = SimulatedClock(START)
    await seed_catalog(redis, bus_keys, clock)
    return {"redis": redis, "redis_url": redis_url, "keys": bus_keys, "db": pg_engine,
            "clock": clock, "publisher": Publisher(redis, keys=bus_keys)}  # fmt: skip


@pytest.fixture
def busy_config(tmp_path):
    """The shipped config with the counters opened wide, so a flood of entries is approved."""
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    path = tmp_path / "config" / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["risk"].update(
        max_open_trades=9, max_trades_per_hour=1000, max_trades_per_day=10000,
        hourly_budget_usd=1_000_000, daily_budget_usd=10_000_000, new_trade_cooldown_s=0,
    )  # fmt: skip
    path.write_text(yaml.safe_dump(policy))
    return tmp_path / "config"


class HoldingStore(RiskStore):
    """Postgres as usual, except that one proposal's decision waits until released."""

    def __init__(self, store: RiskStore, proposal_id: str) -> None:
        self.__dict__.update(store.__dict__)
        self.proposal_id = proposal_id
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def save(self, effects, now):
        if any(d.proposal_id == self.proposal_id for d in effects.decisions):
            self.holding.set()
            await self.release.wait()
        await super().save(effects, now)


class CountingLock(asyncio.Lock):
    """A lock that tells how many are waiting for it."""

    waiting = 0

    async def acquire(self):
        self.waiting += 1
        try:
            return await super().acquire()
        finally:
            self.waiting -= 1


def _proposal(n: int, product: str, action: ProposalAction, quote: str, clock) -> TradeProposed:
    return TradeProposed(
        proposal_id=f"ema:{product}:{n}:{action.value}", strategy="ema", product_id=product,
        side=Side.BUY if action is ProposalAction.ENTRY else Side.SELL, action=action,
        quote_size=Decimal(quote), reference_mid=PRICES[product], decided_at=clock.now(),
    )  # fmt: skip


async def _propose(stack, proposal: TradeProposed) -> None:
    await stack["publisher"].publish(new_envelope(proposal, stack["clock"]))


async def _tick(stack, product: str, bid: str, ask: str) -> None:
    tick = TickUpdated(
        product_id=product, best_bid=Decimal(bid), best_bid_size=Decimal(1),
        best_ask=Decimal(ask), best_ask_size=Decimal(1), exchange_time=stack["clock"].now(),
    )  # fmt: skip
    await stack["publisher"].publish(new_envelope(tick, stack["clock"]))


async def _decisions(stack) -> dict[str, ProposalDecided]:
    payloads = await stream_payloads(stack["redis"], stack["keys"], "risk.decisions")
    return {p.proposal_id: p for p in payloads if isinstance(p, ProposalDecided)}


async def _decided(stack, proposal_id: str) -> ProposalDecided:
    async def found():
        return (await _decisions(stack)).get(proposal_id)

    decision: ProposalDecided = await eventually(found, what=f"a decision on {proposal_id}")
    return decision


def _execution(stack, **options) -> FakeExecution:
    return FakeExecution(stack["redis"], stack["keys"], stack["db"], stack["clock"],
                         dict(PRICES), **options)  # fmt: skip


def _risk(stack, **settings):
    """The risk service over this test's Redis prefix, Postgres schema and clock."""
    return risk_service(stack["redis_url"], stack["keys"], stack["db"], stack["clock"], **settings)


async def _until_done(stack, risk, flatten_id: str, step_s: int = 5) -> dict:
    """Poll a flatten until DONE, moving the clock on so each retry's back-off passes."""

    async def done():
        stack["clock"].advance(timedelta(seconds=step_s))
        job = (await risk.client.get(f"/v1/flatten/{flatten_id}")).json()
        return job if job["status"] == "DONE" else None

    job: dict = await eventually(done, within=20, what=f"flatten {flatten_id} to finish")
    return job


async def _open_position(stack, risk, n: int, product: str, quote: str) -> None:
    await _propose(stack, _proposal(n, product, ProposalAction.ENTRY, quote, stack["clock"]))
    assert (
        await _decided(stack, f"ema:{product}:{n}:ENTRY")
    ).outcome is not DecisionOutcome.REJECTED

    async def held():
        positions = (await risk.client.get("/v1/positions")).json()
        return any(p["product_id"] == product and Decimal(p["base"]) > 0 for p in positions)

    await eventually(held, what=f"a {product} position")


async def test_every_control_route_refuses_missing_wrong_and_replayed_tokens(stack):
    async with _risk(stack) as risk:
        base = str(risk.client.base_url)
        routes = [("GET", "/v1/status"), ("GET", "/v1/positions"), ("GET", "/v1/decisions"),
                  ("POST", "/v1/pause"), ("POST", "/v1/resume"), ("POST", "/v1/flatten"),
                  ("GET", "/v1/flatten/x")]  # fmt: skip
        async with httpx.AsyncClient(base_url=base) as anonymous:

            async def call(method: str, path: str, token: str) -> httpx.Response:
                return await anonymous.request(
                    method, path, json={"reason": "x"}, headers={"Authorization": f"Bearer {token}"}
                )  # fmt: skip

            for method, path in routes:
                missing = await anonymous.request(method, path, json={"reason": "x"})
                assert missing.status_code == 401 and missing.json()["detail"] == (
                    "missing bearer token"
                ), path
                assert missing.headers["www-authenticate"] == "Bearer"
                # the token is checked before the body is read: a body that is not JSON
                # does not turn the refusal into a complaint about the body
                garbled = await anonymous.request(
                    method, path, content=b"{not json", headers={"Content-Type": "application/json"}
                )  # fmt: skip
                assert (garbled.status_code, garbled.json()["detail"]) == (
                    401, "missing bearer token"
                ), path  # fmt: skip
                refusals = {
                    "the bare secret": (TOKEN, "malformed token"),
                    "another secret": (
                        mint_token(TOKEN[:-1] + "X", method, path), "wrong signature"
                    ),
                    "another route": (mint_token(TOKEN, "GET", "/v1/other"), "another request"),
                    "expired": (mint_token(TOKEN, method, path, clock=_ago(200)), "expired"),
                    "too long-lived": (
                        mint_token(TOKEN, method, path, lifetime_s=3600), "lifetime over"
                    ),
                }  # fmt: skip
                for what, (token, reason) in refusals.items():
                    refused = await call(method, path, token)
                    assert refused.status_code == 401, (path, what)
                    assert reason in refused.json()["detail"], (path, what)
                    assert token not in refused.text
            odd_actor = mint_token(TOKEN, "POST", "/v1/pause", actor="<script>")
            assert (await call("POST", "/v1/pause", odd_actor)).status_code == 401
            fresh = mint_token(TOKEN, "GET", "/v1/status")
            assert (await call("GET", "/v1/status", fresh)).status_code == 200
            replayed = await call("GET", "/v1/status", fresh)
            assert (replayed.status_code, replayed.json()["detail"]) == (401, "token already used")
            pause = mint_token(TOKEN, "POST", "/v1/pause", actor="mallory")
            assert (await call("POST", "/v1/pause", pause)).status_code == 200
            assert (await call("POST", "/v1/pause", pause)).status_code == 401
            schema = (await anonymous.get("/openapi.json")).json()
        assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert schema["paths"]["/v1/pause"]["post"]["security"] == [{"HTTPBearer": []}]
        # a signed path with an encoded "?" is checked as signed, then refused for its shape
        odd_id = await risk.client.get("/v1/flatten/a%3Fb%23c")
        assert odd_id.status_code == 422, odd_id.text
        resumed = await risk.client.post("/v1/resume", json={"reason": "checked"})
        assert resumed.json()["state"] == "RUNNING"
    # only the accepted mutations are in the audit trail, each with who and from where
    async with stack["db"].connect() as connection:
        rows = (await connection.execute(select(ControlAction).order_by(ControlAction.id))).all()
    assert [(r.action, r.actor, r.reason) for r in rows] == [
        ("PAUSE", "mallory (127.0.0.1)", "x"), ("RESUME", "tester (127.0.0.1)", "checked"),
    ]  # fmt: skip


def _ago(seconds: float) -> SimulatedClock:
    return SimulatedClock(datetime.now(UTC) - timedelta(seconds=seconds))


async def test_a_proposal_is_decided_published_and_stored(stack):
    async with (
        _risk(stack),
        _execution(stack).running(),
    ):
        await _propose(stack, _proposal(1, "BTC-USD", ProposalAction.ENTRY, "250", stack["clock"]))
        decision = await _decided(stack, "ema:BTC-USD:1:ENTRY")
        assert decision.outcome is DecisionOutcome.APPROVED
        orders = await stream_payloads(stack["redis"], stack["keys"], "risk.orders")
        assert [(o.intent_id, o.quote_size) for o in orders if isinstance(o, PlaceOrder)] == [
            ("ema:BTC-USD:1:ENTRY", Decimal("250.00"))
        ]
        async with stack["db"].connect() as connection:
            row = (await connection.execute(select(RiskDecision))).one()
        assert (row.outcome, row.approved_quote_size, row.mode) == (
            "APPROVED",
            Decimal("250.00"),
            "PAPER",
        )


async def test_pause_cancels_open_entries_blocks_new_ones_and_lets_exits_through(stack):
    execution = _execution(stack)
    async with (
        _risk(stack) as risk,
        execution.running(),
    ):
        await _open_position(stack, risk, 1, "BTC-USD", "300")
        execution.hold_entries = True
        stack["clock"].advance(timedelta(minutes=10))
        await _propose(stack, _proposal(2, "ETH-USD", ProposalAction.ENTRY, "200", stack["clock"]))
        await _decided(stack, "ema:ETH-USD:2:ENTRY")
        await eventually(lambda: "ema:ETH-USD:2:ENTRY" in execution.held, what="a held entry")

        response = await risk.client.post("/v1/pause", json={"reason": "CPI print"})
        assert response.status_code == 200 and response.json()["state"] == "PAUSED"
        await eventually(lambda: not execution.held, what="the open entry cancelled")

        await _propose(stack, _proposal(3, "SOL-USD", ProposalAction.ENTRY, "100", stack["clock"]))
        rejected = await _decided(stack, "ema:SOL-USD:3:ENTRY")
        assert rejected.outcome is DecisionOutcome.REJECTED
        assert "trading_paused" in rejected.reasons
        await _propose(stack, _proposal(4, "BTC-USD", ProposalAction.EXIT, "300", stack["clock"]))
        assert (await _decided(stack, "ema:BTC-USD:4:EXIT")).outcome is DecisionOutcome.APPROVED

        resumed = await risk.client.post("/v1/resume", json={"reason": "data out"})
        assert resumed.json()["state"] == "RUNNING"
        stack["clock"].advance(timedelta(minutes=10))
        await _propose(stack, _proposal(5, "SOL-USD", ProposalAction.ENTRY, "100", stack["clock"]))
        assert (await _decided(stack, "ema:SOL-USD:5:ENTRY")).outcome is DecisionOutcome.APPROVED

    audit = await stream_payloads(stack["redis"], stack["keys"], "risk.control")
    assert [(a.action, a.actor.split()[0], a.reason) for a in audit
            if isinstance(a, TradingStateChanged)] == [
        ("PAUSE", "tester", "CPI print"), ("RESUME", "tester", "data out"),
    ]  # fmt: skip
    async with stack["db"].connect() as connection:
        rows = (await connection.execute(select(ControlAction).order_by(ControlAction.id))).all()
        assert [(r.action, r.reason, r.actor.split()[0]) for r in rows] == [
            ("PAUSE", "CPI print", "tester"), ("RESUME", "data out", "tester"),
        ]  # fmt: skip


async def test_flatten_retries_until_every_position_is_flat(stack):
    execution = _execution(stack)
    async with (
        _risk(stack) as risk,
        execution.running(),
    ):
        await _open_position(stack, risk, 1, "BTC-USD", "500")
        await _open_position(stack, risk, 2, "ETH-USD", "400")
        execution.exit_fill_ratio = Decimal("0.5")  # the venue fills half of each exit

        response = await risk.client.post("/v1/flatten", json={"reason": "venue incident"})
        assert response.status_code == 202
        flatten_id = response.json()["flatten_id"]
        assert set(response.json()["products"]) == {"BTC-USD", "ETH-USD"}

        job = await _until_done(stack, risk, flatten_id)
        assert {p: v["status"] for p, v in job["products"].items()} == {
            "BTC-USD": "FLAT",
            "ETH-USD": "FLAT",
        }
        assert all(v["attempts"] >= 2 for v in job["products"].values())
        positions = (await risk.client.get("/v1/positions")).json()
        assert all(p["dust"] for p in positions)
        status = (await risk.client.get("/v1/status")).json()
        assert status["trading"]["state"] == "PAUSED"
    commands = await stream_payloads(stack["redis"], stack["keys"], "risk.orders")
    first_cancel = next(i for i, c in enumerate(commands) if isinstance(c, CancelOrders))
    # everything but the flatten's own exits, which a second flatten must not cancel
    assert set(commands[first_cancel].kinds) == {IntentKind.ENTRY, IntentKind.EXIT}
    assert all(c.kind is IntentKind.FLATTEN for c in commands[first_cancel + 1:]
               if isinstance(c, PlaceOrder))  # fmt: skip


async def test_an_entry_decided_while_a_flatten_arrives_is_ordered_before_its_cancel(stack):
    execution = _execution(stack, hold_entries=True)
    async with (
        _risk(stack) as risk,
        execution.running(),
    ):
        service = risk.service
        await eventually(lambda: service.restored, what="the state restored")
        store = HoldingStore(service.store, "ema:ETH-USD:1:ENTRY")
        service.store, service.gate = store, CountingLock()
        await _propose(stack, _proposal(1, "ETH-USD", ProposalAction.ENTRY, "200", stack["clock"]))
        await eventually(store.holding.is_set, what="the entry held mid-decision")
        flatten = asyncio.create_task(
            risk.client.post("/v1/flatten", json={"reason": "kill switch"})
        )
        await eventually(lambda: service.gate.waiting or flatten.done(), what="the flatten sent")
        store.release.set()
        assert (await flatten).status_code == 202
        await _propose(stack, _proposal(2, "SOL-USD", ProposalAction.ENTRY, "200", stack["clock"]))
        late = await _decided(stack, "ema:SOL-USD:2:ENTRY")
        assert late.outcome is DecisionOutcome.REJECTED
        assert {"flatten_in_progress", "trading_paused"} & set(late.reasons)  # running or done
        await eventually(lambda: not execution.held, what="the held entry cancelled")

    commands = await stream_payloads(stack["redis"], stack["keys"], "risk.orders")
    kinds = [(type(c).__name__, getattr(c, "intent_id", None)) for c in commands]
    assert kinds[:2] == [("PlaceOrder", "ema:ETH-USD:1:ENTRY"), ("CancelOrders", None)]
    assert not [c for c in commands[2:] if isinstance(c, PlaceOrder) and c.kind is IntentKind.ENTRY]


async def test_no_entry_is_approved_once_a_flatten_has_started(stack, busy_config):
    execution = _execution(stack)
    async with (
        _risk(stack, config_dir=busy_config) as risk,
        execution.running(),
    ):
        await _open_position(stack, risk, 0, "BTC-USD", "300")
        products = ["ETH-USD", "SOL-USD", "BTC-USD"]
        proposals = [
            _proposal(n, products[n % 3], ProposalAction.ENTRY, "20", stack["clock"])
            for n in range(1, 61)
        ]

        async def flood():
            for proposal in proposals:
                await _propose(stack, proposal)
                await asyncio.sleep(0)

        flooding = asyncio.create_task(flood())
        await eventually(lambda: len(execution.seen) >= 3, what="some proposals decided first")
        response = await risk.client.post("/v1/flatten", json={"reason": "kill switch"})
        await flooding
        for proposal in proposals:
            await _decided(stack, proposal.proposal_id)
        flatten_id = response.json()["flatten_id"]

        await _until_done(stack, risk, flatten_id)

    # each decision goes out with its order in one transaction, under the gate the flatten
    # takes too: an approved entry's order is either before the flatten's cancel or nowhere
    commands = await stream_payloads(stack["redis"], stack["keys"], "risk.orders")
    cancel = next(i for i, c in enumerate(commands) if isinstance(c, CancelOrders))
    entries = {c.intent_id: i for i, c in enumerate(commands)
               if isinstance(c, PlaceOrder) and c.kind is IntentKind.ENTRY}  # fmt: skip
    assert entries and max(entries.values()) < cancel
    decisions = await _decisions(stack)
    approved = {
        d.proposal_id for d in decisions.values()
        if d.action is ProposalAction.ENTRY and d.outcome is not DecisionOutcome.REJECTED
    }  # fmt: skip
    assert approved == set(entries)
    # proposals already in flight when the flatten started were decided after it: rejected
    stopped = [d for d in decisions.values() if "flatten_in_progress" in d.reasons]
    assert stopped and all(d.outcome is DecisionOutcome.REJECTED for d in stopped)


async def test_a_restart_keeps_the_pause_the_positions_and_the_flatten(stack):
    execution = _execution(stack)
    async with execution.running():
        async with _risk(stack) as risk:
            await _open_position(stack, risk, 1, "BTC-USD", "500")
            await _open_position(stack, risk, 2, "ETH-USD", "300")
            execution.exit_fill_ratio = Decimal(0)  # nothing sells: the flatten stays open
            flatten = (
                await risk.client.post("/v1/flatten", json={"products": ["ETH-USD"], "reason": "r"})
            ).json()
            before = (await risk.client.get("/v1/status")).json()
            positions_before = (await risk.client.get("/v1/positions")).json()
        # a fill of an order risk never issued (placed by hand on the account, say), in
        # Postgres as execution stores fills: no position of risk's, after a restart too
        price = PRICES["BTC-USD"]
        await store_taker_fill(stack["db"], "manual:1", "BTC-USD", Side.BUY, price,
                               Decimal("0.5"), Decimal(0), arrival_mid=price,
                               filled_at=stack["clock"].now(),
                               arrival_time=stack["clock"].now())  # fmt: skip
        async with _risk(stack) as risk:
            await eventually(lambda: risk.service.restored, what="the state restored")
            after = (await risk.client.get("/v1/status")).json()
            assert after["trading"] == before["trading"]
            assert after["trading"]["state"] == "FLATTENING"
            assert after["counters"]["entries_last_day"] == 2
            assert (await risk.client.get("/v1/positions")).json() == positions_before
            job = (await risk.client.get(f"/v1/flatten/{flatten['flatten_id']}")).json()
            assert job["status"] == "RUNNING" and list(job["products"]) == ["ETH-USD"]
            execution.exit_fill_ratio = Decimal(1)

            await _until_done(stack, risk, flatten["flatten_id"], step_s=30)
            assert (await risk.client.get("/v1/status")).json()["trading"]["state"] == "PAUSED"
            held = {
                p["product_id"]
                for p in (await risk.client.get("/v1/positions")).json()
                if not p["dust"]
            }
            assert held == {"BTC-USD"}


async def test_a_tick_through_the_stop_sends_an_exit_and_a_crash_pauses_entries(stack):
    async with (
        _risk(stack) as risk,
        _execution(stack, exit_fill_ratio=Decimal(0)).running(),
    ):
        await _open_position(stack, risk, 1, "BTC-USD", "3000")
        await _tick(stack, "BTC-USD", "58100", "58101")  # 3.2% under the 60000 entry

        async def stop_exit():
            orders = await stream_payloads(stack["redis"], stack["keys"], "risk.orders")
            return [
                o
                for o in orders
                if isinstance(o, PlaceOrder) and o.intent_id.startswith("stop_loss:")
            ]

        (exit_order,) = await eventually(stop_exit, what="a stop-loss exit")
        assert exit_order.side is Side.SELL and exit_order.kind is IntentKind.EXIT
        # 3000 USD of BTC losing half its value is 15% of 10000 equity: past both loss limits
        await _tick(stack, "BTC-USD", "30000", "30001")

        async def paused():
            status = (await risk.client.get("/v1/status")).json()
            return status["trading"] if status["trading"]["state"] == "PAUSED" else None

        trading = await eventually(paused, what="entries paused by the loss limit")
        assert trading["actor"] == "risk" and trading["reason"].startswith("daily_loss_limit")
        refused = await risk.client.post("/v1/resume", json={"reason": "try"})
        assert refused.status_code == 409 and "daily_loss_limit" in refused.json()["detail"]


async def test_a_redelivered_proposal_decided_before_repeats_its_decision_without_a_rebuild(
    stack,
):
    proposal = _proposal(2, "BTC-USD", ProposalAction.ENTRY, "250", stack["clock"])
    async with _risk(stack):
        await _propose(stack, proposal)
        first = await _decided(stack, proposal.proposal_id)
    # The same entry delivered to risk's consumer again and never acked: as when risk dies
    # after its commit, before its ack. The restart rebuilds once and publishes the open
    # order again; the redelivery only repeats the decision.
    redis, stream = stack["redis"], stack["keys"].stream("signal.proposals")
    [(_entry_id, fields)] = await redis.xrange(stream)
    await redis.xadd(stream, fields)
    await redis.xreadgroup("risk", "risk-1", {stream: ">"})
    recoveries = metric("risk_recoveries_total")
    async with _risk(stack):

        async def repeated():
            payloads = await stream_payloads(redis, stack["keys"], "risk.decisions")
            return [p for p in payloads if isinstance(p, ProposalDecided)][1:]

        (again,) = await eventually(repeated, what="the decision published again")
        await eventually(lambda: _nothing_pending(stack), what="the redelivery acked")
    assert again == first
    assert metric("risk_recoveries_total") == recoveries + 1  # the start's, no other
    orders = await stream_payloads(redis, stack["keys"], "risk.orders")
    assert [o.intent_id for o in orders if isinstance(o, PlaceOrder)] == [
        proposal.proposal_id
    ] * 2  # fmt: skip
    async with stack["db"].connect() as connection:
        assert len((await connection.execute(select(RiskDecision))).all()) == 1


async def _nothing_pending(stack) -> bool:
    stream = stack["keys"].stream("signal.proposals")
    return (await stack["redis"].xpending(stream, "risk"))["pending"] == 0


async def test_a_proposal_decided_before_is_not_decided_again_but_its_decision_is_repeated(stack):
    # A new envelope for a decided proposal: as after a crash between risk's Postgres
    # commit and its publish. Nothing may be counted twice; the same answer goes out.
    proposal = _proposal(1, "BTC-USD", ProposalAction.ENTRY, "250", stack["clock"])
    async with _risk(stack) as risk:
        await _propose(stack, proposal)
        first = await _decided(stack, proposal.proposal_id)
        await _propose(stack, proposal)

        async def repeated():
            payloads = await stream_payloads(stack["redis"], stack["keys"], "risk.decisions")
            return [p for p in payloads if isinstance(p, ProposalDecided)][1:]

        (again,) = await eventually(repeated, what="the decision published again")
        assert again == first
        orders = await stream_payloads(stack["redis"], stack["keys"], "risk.orders")
        intents = [o.intent_id for o in orders if isinstance(o, PlaceOrder)]
        assert intents == [proposal.proposal_id] * 2  # the open order again: execution dedupes
        status = (await risk.client.get("/v1/status")).json()
        assert status["counters"]["entries_last_hour"] == 1
        assert status["counters"]["open_intents"] == 1
        async with stack["db"].connect() as connection:
            rows = (await connection.execute(select(RiskDecision))).all()
        assert len(rows) == 1
