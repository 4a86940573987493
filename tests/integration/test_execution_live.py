"""The execution service in LIVE against exchange-sim over HTTP, through the real rate limiter.

exchange-sim's market stands still here (one step every 10 s): a post-only order rests
until the test prints a trade through it at the sim, and a market order fills at once.
Every test checks three records against each other: Postgres, ``exec.reports`` and the
venue's own orders and fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy.local.servers import PostgresServer
from services.exchange_sim.limits import WindowLimiter, WindowVerdict
from services.execution.app import ExecutionSettings, bootstrap
from services.execution.orders import client_order_id
from shared.bus import BusKeys, Publisher
from shared.clock import LiveClock
from shared.coinbase.rest import CoinbaseRest
from shared.config import load_config
from shared.db import make_engine, upgrade
from shared.matching.types import Order as SimOrder
from shared.messages import (
    CancelOrders,
    Envelope,
    IntentFinished,
    IntentKind,
    LiquidityPreference,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    Payload,
    PlaceOrder,
    TickUpdated,
    TradingMode,
    decode,
    new_envelope,
)
from shared.money import Side
from shared.products import ProductCatalog, ProductInfo
from shared.ratelimit import RateLimitClient
from tests.support.execution import ExecutionHandle, fills_of, orders_of
from tests.support.polling import eventually, metric
from tests.support.venue import (
    CONFIG_DIR,
    CdpTestKey,
    SimHandle,
    coinbase_client,
    rate_limiter_service,
    running_sim,
    serving,
)

pytestmark = pytest.mark.slow

PRODUCT = "BTC-USD"
FAST_TTLS = {"maker_wait_ttl_s": 0.5, "pending_ttl_s": 1, "stale_ttl_s": 30}


@pytest.fixture(scope="module")
def key() -> CdpTestKey:
    return CdpTestKey.generate()


@pytest.fixture
def sim_settings() -> dict[str, Any]:
    """exchange-sim's settings beyond the still market; a test parametrizes this."""
    return {}


def shrunk_config(tmp_path: Path, **ttls: float) -> Path:
    """The shipped config with these execution TTLs."""
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    path = tmp_path / "config" / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["execution"].update(ttls)
    path.write_text(yaml.safe_dump(policy))
    return tmp_path / "config"


@pytest.fixture
def fast_config(tmp_path: Path) -> Path:
    return shrunk_config(tmp_path, **FAST_TTLS)


@dataclass
class Live:
    """exchange-sim, the rate limiter, Redis and Postgres; execution started on demand."""

    redis: Redis
    redis_url: str
    keys: BusKeys
    db: AsyncEngine
    sim: SimHandle
    limiter_url: str
    rest: CoinbaseRest
    key: CdpTestKey
    clock: LiveClock = field(default_factory=LiveClock)

    @contextlib.asynccontextmanager
    async def service(self, **settings: Any) -> AsyncIterator[ExecutionHandle]:
        """LIVE execution on this sim, polling fast; ready (restored) when it yields."""
        options = {
            "redis_url": self.redis_url, "bus_prefix": self.keys.prefix,
            "config_dir": CONFIG_DIR, "trading_mode": "LIVE",
            "coinbase_rest_url": self.sim.base_url, "rate_limiter_url": self.limiter_url,
            "cb_api_key": self.key.name, "cb_api_secret": self.key.private_pem,
            "exec_timer_interval_s": 0.02, "exec_poll_interval_s": 0.1,
            "exec_venue_timeout_s": 5, **settings,
        }  # fmt: skip
        app = bootstrap(ExecutionSettings(**options), database=self.db, clock=self.clock)
        async with serving(app) as port:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                handle = ExecutionHandle(app, client)
                await eventually(lambda: _ready(handle), what="execution restored")
                yield handle

    async def seed_catalog(self) -> None:
        """What market-data caches: the sim's own products, so the increments match."""
        products = await self.rest.products()
        infos = [ProductInfo.from_venue(p, self.clock.now()) for p in products]
        await ProductCatalog(self.redis, self.keys.prefix).save(infos)

    async def publish(self, payload: Payload, origin_ts: int | None = None) -> None:
        envelope = new_envelope(payload, self.clock, origin_ts=origin_ts)
        await Publisher(self.redis, keys=self.keys).publish(envelope)

    async def best(self) -> tuple[Decimal, Decimal]:
        book = (await self.rest.product_book(PRODUCT, limit=1)).pricebook
        return book.bids[0].price, book.asks[0].price

    async def tick(self, handle: ExecutionHandle, bid: Decimal, ask: Decimal) -> None:
        """A tick on ``md.ticks``, as market-data would publish it; waits until it is seen."""
        await self.publish(TickUpdated(
            product_id=PRODUCT, best_bid=bid, best_bid_size=Decimal(1), best_ask=ask,
            best_ask_size=Decimal(1), exchange_time=self.clock.now(),
        ))  # fmt: skip
        quotes = handle.service._quotes
        await eventually(lambda: quotes.get(PRODUCT, (0, 0))[0] == bid, what="quote seen")

    async def resting_far(
        self, handle: ExecutionHandle, intent_id: str, origin_ts: int
    ) -> tuple[PlaceOrder, SimOrder, Decimal]:
        """A maker entry for 0.004 resting at a bid 10% down, where the still market never
        goes: the command, its order at the venue, and its limit."""
        bid, ask = await self.best()
        far = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
        command = intent(intent_id, (bid + ask) / 2, base="0.004",
                         liquidity=LiquidityPreference.MAKER_FIRST)  # fmt: skip
        await self.tick(handle, far, ask)
        await self.publish(command, origin_ts=origin_ts)
        await eventually(lambda: self.order_status(intent_id, OrderStatus.OPEN), what="resting")
        [resting] = self.venue_orders(intent_id)
        return command, resting, far

    async def reports(self) -> list[Envelope[Payload]]:
        entries = await self.redis.xrange(self.keys.stream("exec.reports"))
        return [decode(fields[b"env"]) for _id, fields in entries or [] if fields]

    async def finished(self, intent_id: str, within: float = 10) -> IntentFinished:
        async def check() -> IntentFinished | None:
            for envelope in await self.reports():
                data = envelope.data
                if isinstance(data, IntentFinished) and data.intent_id == intent_id:
                    return data
            return None

        finished: IntentFinished = await eventually(
            check, within=within, what=f"IntentFinished for {intent_id}"
        )
        return finished

    async def order_status(self, intent_id: str, status: OrderStatus) -> bool:
        return any(
            isinstance(e.data, OrderUpdated) and e.data.intent_id == intent_id
            and e.data.status is status for e in await self.reports()
        )  # fmt: skip

    def venue_orders(self, intent_id: str) -> list[SimOrder]:
        """The intent's orders at the venue (its client order id family), oldest first."""
        family = client_order_id(intent_id, 0).rsplit("-", 1)[0]
        mine = [o for o in self.sim.venue.orders()
                if o.request.client_order_id.rsplit("-", 1)[0] == family]  # fmt: skip
        return mine[::-1]


@contextlib.asynccontextmanager
async def live_stack(
    redis: Redis, redis_url: str, bus_keys: BusKeys, database: AsyncEngine, key: CdpTestKey,
    sim_settings: dict[str, Any],
) -> AsyncIterator[Live]:  # fmt: skip
    """exchange-sim with a still market, the rate limiter and a client, over ``database``."""
    async with (
        running_sim(key, **{"sim_step_ms": 10_000, **sim_settings}) as sim,
        rate_limiter_service(redis_url, bus_keys.prefix) as limiter_url,
        httpx.AsyncClient(base_url=limiter_url, timeout=5) as limiter_http,
    ):
        limiter = RateLimitClient(limiter_http, load_config(CONFIG_DIR).ratelimits)
        async with coinbase_client(sim.base_url, limiter, key) as rest:
            stack = Live(redis, redis_url, bus_keys, database, sim, limiter_url, rest, key)
            await stack.seed_catalog()
            yield stack


@pytest.fixture
async def live(
    redis: Redis, redis_url: str, bus_keys: BusKeys, pg_url: str, pg_engine: AsyncEngine,
    key: CdpTestKey, sim_settings: dict[str, Any],
) -> AsyncIterator[Live]:  # fmt: skip
    upgrade(pg_url)
    async with live_stack(redis, redis_url, bus_keys, pg_engine, key, sim_settings) as stack:
        yield stack


async def _ready(handle: ExecutionHandle) -> bool:
    return (await handle.client.get("/readyz")).status_code == 200


def intent(
    intent_id: str, mid: Decimal, *, kind: IntentKind = IntentKind.ENTRY, side: Side = Side.BUY,
    quote: str | None = None, base: str | Decimal | None = None,
    liquidity: LiquidityPreference = LiquidityPreference.TAKER,
) -> PlaceOrder:  # fmt: skip
    return PlaceOrder(
        intent_id=intent_id, kind=kind, product_id=PRODUCT, side=side,
        quote_size=Decimal(quote) if quote else None, base_size=Decimal(base) if base else None,
        reference_mid=mid, liquidity=liquidity, issued_at=LiveClock().now(),
    )  # fmt: skip


async def mid_of(live: Live) -> Decimal:
    bid, ask = await live.best()
    return (bid + ask) / 2


async def assert_the_venues_fills(live: Live, command: PlaceOrder) -> list[Any]:
    """Recorded once each and reported, with the venue's trade ids, prices, fees and
    liquidity, and the intent's reference mid as the arrival mid."""
    fills = await fills_of(live.db, command.intent_id)
    real = [f for order in live.venue_orders(command.intent_id) for f in order.fills]
    assert real, "the venue filled nothing"
    assert sorted((f.trade_id, f.price, f.size, f.fee, f.liquidity) for f in fills) == sorted(
        (f.trade_id, f.price, f.size, f.commission, f.liquidity.value) for f in real
    )
    assert all(f.fee > 0 and f.venue == "coinbase" and f.mode == "LIVE" for f in fills)
    assert {f.arrival_mid for f in fills} == {command.reference_mid}
    # a restart reports an open intent's fills again, under the same ids: consumers dedupe
    reported = {
        (e.id, e.data.trade_id)
        for e in await live.reports()
        if isinstance(e.data, OrderFilled) and e.data.intent_id == command.intent_id
    }
    assert reported == {(f"exec:fill:{f.trade_id}", f.trade_id) for f in fills}  # fmt: skip
    return fills


async def assert_reported_once(live: Live, intent_id: str, origin_ts: int) -> None:
    """One IntentFinished, after every OrderFilled, and the command's origin_ts throughout."""
    mine = [e for e in await live.reports() if getattr(e.data, "intent_id", None) == intent_id]
    kinds = [type(e.data).__name__ for e in mine]
    assert kinds.count("IntentFinished") == 1 and kinds[-1] == "IntentFinished"
    assert {e.origin_ts for e in mine} == {origin_ts}


async def test_a_taker_entry_by_quote_fills_at_the_venue(live: Live) -> None:
    command = intent("entry:taker", await mid_of(live), quote="250")
    async with live.service():
        await live.publish(command, origin_ts=111)
        finished = await live.finished("entry:taker")
    assert finished.status is OrderStatus.FILLED and finished.mode is TradingMode.LIVE
    [venue_order] = live.venue_orders("entry:taker")
    assert venue_order.request.kind.name == "MARKET_IOC" and venue_order.status.value == "FILLED"
    fills = await assert_the_venues_fills(live, command)
    assert {f.liquidity for f in fills} == {"TAKER"}
    assert finished.filled_base == sum(f.size for f in fills) == venue_order.filled_size
    assert finished.filled_quote + sum(f.fee for f in fills) <= Decimal(250)
    [order] = await orders_of(live.db, "entry:taker")
    assert (order.status, order.venue_order_id) == ("FILLED", venue_order.order_id)
    assert order.quote_size == Decimal(250) and order.order_type == "MARKET"
    await assert_reported_once(live, "entry:taker", 111)


async def test_a_taker_exit_by_base_sells_what_the_entry_bought(live: Live) -> None:
    mid = await mid_of(live)
    async with live.service():
        await live.publish(intent("entry:buy", mid, quote="200"))
        bought = await live.finished("entry:buy")
        exit_ = intent("exit:sell", mid, kind=IntentKind.EXIT, side=Side.SELL,
                       base=bought.filled_base)  # fmt: skip
        await live.publish(exit_, origin_ts=222)
        sold = await live.finished("exit:sell")
    assert sold.status is OrderStatus.FILLED and sold.filled_base == bought.filled_base
    [venue_order] = live.venue_orders("exit:sell")
    assert venue_order.request.side is Side.SELL
    assert venue_order.request.base_size == bought.filled_base
    fills = await assert_the_venues_fills(live, exit_)
    assert {(f.side, f.liquidity) for f in fills} == {("SELL", "TAKER")}
    await assert_reported_once(live, "exit:sell", 222)


async def test_a_maker_entry_rests_at_the_best_bid_then_goes_taker(
    live: Live, fast_config: Path
) -> None:
    bid, ask = await live.best()
    command = intent("entry:maker", (bid + ask) / 2, quote="300",
                     liquidity=LiquidityPreference.MAKER_FIRST)  # fmt: skip
    async with live.service(config_dir=fast_config) as handle:
        await live.tick(handle, bid, ask)
        await live.publish(command, origin_ts=333)
        finished = await live.finished("entry:maker")
    limit, market = live.venue_orders("entry:maker")
    assert limit.request.post_only and limit.request.limit_price == bid
    assert limit.status.value == "CANCELLED"  # partly filled, perhaps, but never all of it
    assert market.request.kind.name == "MARKET_IOC" and market.status.value == "FILLED"
    orders = await orders_of(live.db, "entry:maker")
    assert [(o.order_type, o.status, o.venue_order_id) for o in orders] == [
        ("LIMIT", "CANCELLED", limit.order_id), ("MARKET", "FILLED", market.order_id),
    ]  # fmt: skip
    fills = await assert_the_venues_fills(live, command)
    assert finished.status is OrderStatus.FILLED
    assert finished.filled_quote + sum(f.fee for f in fills) <= Decimal(300)
    await assert_reported_once(live, "entry:maker", 333)


async def test_cancel_orders_cancels_a_resting_maker_entry(live: Live) -> None:
    bid, ask = await live.best()
    far = (bid * Decimal("0.9")).quantize(Decimal("0.01"))  # the market never gets there
    command = intent("entry:cancel", (bid + ask) / 2, quote="300",
                     liquidity=LiquidityPreference.MAKER_FIRST)  # fmt: skip
    async with live.service() as handle:
        await live.tick(handle, far, ask)
        await live.publish(command, origin_ts=444)
        await eventually(lambda: live.order_status("entry:cancel", OrderStatus.OPEN),
                         what="resting")  # fmt: skip
        await live.publish(CancelOrders(command_id="c1", kinds=(IntentKind.ENTRY,),
                                        reason="paused", issued_at=live.clock.now()))  # fmt: skip
        finished = await live.finished("entry:cancel")
    assert finished.status is OrderStatus.CANCELLED and finished.reason == "paused"
    [venue_order] = live.venue_orders("entry:cancel")
    assert venue_order.status.value == "CANCELLED" and venue_order.request.limit_price == far
    [order] = await orders_of(live.db, "entry:cancel")
    assert (order.status, order.venue_order_id) == ("CANCELLED", venue_order.order_id)
    assert await fills_of(live.db, "entry:cancel") == []
    await assert_reported_once(live, "entry:cancel", 444)


@pytest.mark.parametrize(
    "fault",
    ["timeout_after_accept", "timeout_before_accept", "error_after_accept", "error_before_accept"],
)
async def test_a_create_order_fault_leaves_exactly_one_order(
    live: Live, fast_config: Path, fault: str
) -> None:
    command = intent(f"entry:{fault}", await mid_of(live), quote="100")
    async with live.service(config_dir=fast_config, exec_venue_timeout_s=1):
        await live.sim.faults(create_order=[fault], hang_s=2)
        await live.publish(command, origin_ts=555)
        finished = await live.finished(command.intent_id)
    # the client looked the order up by its client order id and sent the same one if missing
    [venue_order] = live.venue_orders(command.intent_id)
    assert venue_order.request.client_order_id == client_order_id(command.intent_id, 0)
    assert finished.status is OrderStatus.FILLED
    [order] = await orders_of(live.db, command.intent_id)
    assert (order.status, order.venue_order_id) == ("FILLED", venue_order.order_id)
    await assert_the_venues_fills(live, command)
    await assert_reported_once(live, command.intent_id, 555)


@pytest.mark.parametrize("sim_settings", [{"sim_private_rate_per_s": 3}])
async def test_intents_all_fill_through_the_venues_429s(
    live: Live, fast_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused: list[str] = []
    check = WindowLimiter.check

    def counting(limiter: WindowLimiter, identity: str, now_unix_s: float) -> WindowVerdict:
        verdict = check(limiter, identity, now_unix_s)
        if not verdict.allowed:
            refused.append(identity)
        return verdict

    monkeypatch.setattr(WindowLimiter, "check", counting)  # counts the sim's 429s
    mid = await mid_of(live)
    commands = [intent(f"entry:busy:{n}", mid, quote="50") for n in range(6)]
    async with live.service(config_dir=fast_config):
        await asyncio.gather(*(live.publish(c) for c in commands))
        finishes = [await live.finished(c.intent_id, within=20) for c in commands]
    assert refused, "the venue never answered 429"
    assert {f.status for f in finishes} == {OrderStatus.FILLED}
    for command in commands:
        [venue_order] = live.venue_orders(command.intent_id)
        assert venue_order.status.value == "FILLED"
        assert len(await orders_of(live.db, command.intent_id)) == 1
        await assert_the_venues_fills(live, command)


async def test_an_entry_on_a_cancel_only_product_never_reaches_the_venue(live: Live) -> None:
    catalog = ProductCatalog(live.redis, live.keys.prefix)
    info = await catalog.get(PRODUCT)
    assert info is not None and info.entries_allowed
    await catalog.save([info.model_copy(update={"cancel_only": True, "entries_allowed": False})])
    command = intent("entry:cancel-only", await mid_of(live), quote="100")
    async with live.service():
        await live.publish(command, origin_ts=999)
        finished = await live.finished("entry:cancel-only")
    assert finished.status is OrderStatus.REJECTED and finished.reason == "cancel_only"
    assert live.sim.venue.orders() == []
    assert await orders_of(live.db, "entry:cancel-only") == []
    await assert_reported_once(live, "entry:cancel-only", 999)


async def test_a_restart_reconciles_an_order_whose_answer_was_lost(live: Live) -> None:
    mid = await mid_of(live)
    lost, later = intent("entry:lost", mid, quote="100"), intent("entry:later", mid, quote="60")
    # the pending TTL (60 s shipped) is far off: only the restart's reconcile can settle it
    async with live.service(shutdown_grace_s=0.2):
        await live.sim.faults(create_order=["timeout_after_accept"], hang_s=3)
        await live.publish(lost, origin_ts=701)
        await eventually(lambda: live.venue_orders("entry:lost"), what="the order at the venue")
        # execution stops (as if it died) while the venue's answer hangs
    [pending] = await orders_of(live.db, "entry:lost")
    assert (pending.status, pending.venue_order_id) == ("PENDING", None)
    await live.publish(later, origin_ts=702)  # waits for the restart, behind the reconcile
    async with live.service():
        finished = await live.finished("entry:lost")
        await live.finished("entry:later")
    assert finished.status is OrderStatus.FILLED
    [venue_order] = live.venue_orders("entry:lost")
    [order] = await orders_of(live.db, "entry:lost")
    assert (order.status, order.venue_order_id) == ("FILLED", venue_order.order_id)
    fills = await assert_the_venues_fills(live, lost)
    await assert_reported_once(live, "entry:lost", 701)
    reports = [(type(e.data).__name__, getattr(e.data, "intent_id", ""))
               for e in await live.reports()]  # fmt: skip
    first_of_later = min(i for i, (_kind, owner) in enumerate(reports) if owner == "entry:later")
    assert reports.index(("IntentFinished", "entry:lost")) < first_of_later
    async with live.service():  # a second restart finds nothing left to do
        pass
    assert len(await live.reports()) == len(reports)
    assert len(await fills_of(live.db, "entry:lost")) == len(fills)
    assert len(live.venue_orders("entry:lost")) == 1


async def test_a_restart_records_the_fills_it_missed_once(live: Live) -> None:
    async with live.service() as handle:
        command, resting, far = await live.resting_far(handle, "entry:missed", origin_ts=801)
        # the market prints through the limit: part of it fills while execution watches
        live.sim.venue.account.on_trade(PRODUCT, far - 1, Decimal("0.001"), live.clock.now())
        await eventually(lambda: live.order_status("entry:missed", OrderStatus.PARTIALLY_FILLED),
                         what="the first fill reported")  # fmt: skip
    assert len(await fills_of(live.db, "entry:missed")) == 1
    live.sim.venue.account.on_trade(PRODUCT, far - 1, Decimal("0.01"), live.clock.now())
    assert resting.status.value == "FILLED" and len(resting.fills) == 2
    async with live.service():
        finished = await live.finished("entry:missed")
    assert finished.status is OrderStatus.FILLED and finished.filled_base == Decimal("0.004")
    fills = await assert_the_venues_fills(live, command)
    assert [f.liquidity for f in fills] == ["MAKER", "MAKER"]
    assert sum(f.size for f in fills) == finished.filled_base
    [order] = await orders_of(live.db, "entry:missed")
    assert (order.status, order.filled_size) == ("FILLED", Decimal("0.004"))
    await assert_reported_once(live, "entry:missed", 801)
    reports = await live.reports()
    async with live.service():  # a second restart: nothing recorded or reported twice
        pass
    assert len(await live.reports()) == len(reports)
    assert len(await fills_of(live.db, "entry:missed")) == 2


async def test_a_lookup_the_venue_did_not_answer_is_asked_again(
    live: Live, fast_config: Path
) -> None:
    command = intent("entry:unanswered", await mid_of(live), quote="100")
    async with live.service(config_dir=fast_config, exec_venue_timeout_s=1) as handle:
        # every request fails: the create, the client's lookups, the pending TTL's lookup
        await live.sim.faults(error_rate=1.0)
        await live.publish(command)

        def looked_up() -> bool:
            machine = handle.service.intents.get("entry:unanswered")
            if machine is None or handle.service._locks["entry:unanswered"].locked():
                return False
            return machine.orders[-1].lookup_sent_at is not None

        await eventually(looked_up, within=15, what="the pending TTL's lookup, unanswered")
        await live.sim.faults()  # the venue answers again: the next lookup settles the order
        finished = await live.finished("entry:unanswered", within=5)
    assert finished.status is OrderStatus.REJECTED and finished.reason == "not_found_at_venue"
    assert live.venue_orders("entry:unanswered") == []
    [order] = await orders_of(live.db, "entry:unanswered")
    assert order.status == "REJECTED"


async def test_a_hung_order_holds_up_only_its_own_intent(live: Live, tmp_path: Path) -> None:
    config = shrunk_config(tmp_path, maker_wait_ttl_s=1, pending_ttl_s=2, stale_ttl_s=30)
    bid, ask = await live.best()
    far, mid = (bid * Decimal("0.9")).quantize(Decimal("0.01")), (bid + ask) / 2
    waiting = intent("entry:waiting", mid, quote="300", liquidity=LiquidityPreference.MAKER_FIRST)
    async with live.service(config_dir=config) as handle:
        await live.tick(handle, far, ask)
        await live.publish(waiting)
        await eventually(lambda: live.order_status("entry:waiting", OrderStatus.OPEN),
                         what="resting")  # fmt: skip
        await live.sim.faults(create_order=["timeout_before_accept"], hang_s=4)
        await live.publish(intent("entry:hung", mid, quote="100"))
        hung = handle.service._locks["entry:hung"]
        await eventually(hung.locked, what="the second intent's order in flight")
        [limit] = live.venue_orders("entry:waiting")
        assert limit.status.value == "OPEN"
        # the resting entry's maker wait (1 s) runs out while the other order hangs (4 s)
        await eventually(lambda: limit.status.value == "CANCELLED", within=2.5,
                         what="the maker wait's cancel")  # fmt: skip
        assert hung.locked()
        await live.finished("entry:hung")
        await live.finished("entry:waiting")


async def test_fills_made_while_postgres_is_down_are_stored_and_reported_once_it_is_back(
    redis: Redis, redis_url: str, bus_keys: BusKeys, key: CdpTestKey,
    own_postgres: PostgresServer,
) -> None:  # fmt: skip
    """The venue fills a resting order while Postgres is down: execution's polls see the
    fills and cannot record them. Once Postgres is back, the intent is rebuilt from its
    record and the venue, and each fill is recorded and reported once, with no restart."""
    database = make_engine(own_postgres.url)
    async with live_stack(redis, redis_url, bus_keys, database, key, {}) as live:
        async with live.service() as handle:
            command, resting, far = await live.resting_far(handle, "entry:outage", origin_ts=901)
            await asyncio.to_thread(own_postgres.halt)
            rebuilt = metric("execution_intent_resyncs_total")
            # the market prints through the limit while Postgres is down: two fills
            for size in ("0.001", "0.003"):
                live.sim.venue.account.on_trade(PRODUCT, far - 1, Decimal(size), live.clock.now())
            assert resting.status.value == "FILLED" and len(resting.fills) == 2
            await eventually(lambda: "entry:outage" in handle.service._unsynced,
                             what="a poll seeing the fills and failing to record them")  # fmt: skip
            assert not await live.order_status("entry:outage", OrderStatus.PARTIALLY_FILLED)
            assert metric("execution_intents_behind_record") == 1
            assert (await handle.client.get("/healthz")).status_code == 200
            await asyncio.to_thread(own_postgres.resume)
            finished = await live.finished("entry:outage", within=30)
        assert metric("execution_intent_resyncs_total") == rebuilt + 1
        assert metric("execution_intents_behind_record") == 0
        assert finished.status is OrderStatus.FILLED
        assert finished.filled_base == Decimal("0.004")
        fills = await assert_the_venues_fills(live, command)
        assert sorted(f.size for f in fills) == [Decimal("0.001"), Decimal("0.003")]
        await assert_reported_once(live, "entry:outage", 901)
    await database.dispose()
