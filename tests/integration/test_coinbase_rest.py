"""The Coinbase REST client against exchange-sim over HTTP, through the real rate limiter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest

from shared.clock import LiveClock, SimulatedClock
from shared.coinbase import (
    AuthError,
    CredentialsError,
    OrderRejected,
    RateLimited,
    ServerError,
)
from shared.coinbase.errors import VenueUnreachable
from shared.coinbase.rest import CoinbaseRest
from shared.matching.types import OrderKind, OrderRequest
from shared.money import Side
from shared.ratelimit import RateLimitClient
from tests.support.polling import metric
from tests.support.venue import CdpTestKey, SimHandle, coinbase_client, running_sim

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(
    sim: SimHandle, limiter: RateLimitClient, key: CdpTestKey
) -> AsyncIterator[CoinbaseRest]:
    async with coinbase_client(sim.base_url, limiter, key, timeout_s=1.0, page_size=2) as rest:
        yield rest


def order(kind: OrderKind = OrderKind.MARKET_IOC, side: Side = Side.BUY, **fields) -> OrderRequest:  # type: ignore[no-untyped-def]
    if "base_size" not in fields and "quote_size" not in fields:
        market = kind is OrderKind.MARKET_IOC
        fields["quote_size" if market else "base_size"] = Decimal("100" if market else "0.001")
    return OrderRequest(client_order_id=str(uuid.uuid4()), product_id="BTC-USD", side=side,
                        kind=kind, **fields)  # fmt: skip


async def test_market_data_without_a_key_uses_the_public_endpoints(sim, limiter):
    async with coinbase_client(sim.base_url, limiter, None) as public:
        products = await public.products()
        assert {p.product_id for p in products} == {"BTC-USD", "ETH-USD"}
        btc = await public.product("BTC-USD")
        assert btc.base_increment == Decimal("0.00000001") and btc.tick == Decimal("0.01")
        assert btc.accepts_new_orders
        book = await public.product_book("BTC-USD", limit=5)
        bids, asks = book.pricebook.bids, book.pricebook.asks
        assert len(bids) == 5 and len(asks) == 5
        assert bids[0].price < asks[0].price
        assert [b.price for b in bids] == sorted((b.price for b in bids), reverse=True)
        assert book.mid_market == (bids[0].price + asks[0].price) / 2
        trades = await public.market_trades("BTC-USD", limit=3)
        assert trades.best_bid is not None and trades.best_ask is not None
        with pytest.raises(CredentialsError, match="needs a CDP key"):
            await public.best_bid_ask(["BTC-USD"])
        with pytest.raises(CredentialsError):
            await public.accounts()


async def test_candles_page_past_350_per_request_without_gaps_or_duplicates(key, limiter):
    async with running_sim(key, sim_history_minutes=800) as sim:
        async with coinbase_client(sim.base_url, limiter, None) as public:
            end = LiveClock().now().replace(second=0, microsecond=0) - timedelta(minutes=5)
            start = end - timedelta(minutes=700)
            candles = await public.candles("BTC-USD", start, end, "ONE_MINUTE")
    starts = [c.start for c in candles]
    assert starts == list(range(int(start.timestamp()), int(end.timestamp()), 60))
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in candles)


async def test_candles_refuses_an_unknown_granularity(client):
    now = LiveClock().now()
    with pytest.raises(ValueError, match="unknown granularity"):
        await client.candles("BTC-USD", now - timedelta(hours=1), now, "TEN_MINUTE")


async def test_private_reads_with_a_key(client):
    top = await client.best_bid_ask(["BTC-USD", "ETH-USD"])
    assert [b.product_id for b in top.pricebooks] == ["BTC-USD", "ETH-USD"]
    assert all(len(b.bids) == 1 and len(b.asks) == 1 for b in top.pricebooks)
    accounts = await client.accounts()
    usd = next(a for a in accounts if a.currency == "USD")
    assert usd.available_balance.value == Decimal(100_000)
    summary = await client.transaction_summary()
    assert summary.fee_tier.maker_fee_rate == Decimal("0.006")
    assert summary.fee_tier.taker_fee_rate == Decimal("0.012")


async def test_market_order_fills_and_its_fills_page_through(client, sim):
    placed = await client.create_order(order(quote_size=Decimal("5000")))
    assert not placed.resolved_by_lookup
    venue_order = await client.order(placed.order_id)
    assert venue_order.status == "FILLED" and venue_order.client_order_id == placed.client_order_id
    fills = await client.list_fills(order_ids=[placed.order_id])
    assert len(fills) == int(venue_order.number_of_fills) >= 1
    assert len({f.trade_id for f in fills}) == len(fills)
    spent = sum((f.price * f.size + f.commission for f in fills), Decimal(0))
    assert spent <= Decimal("5000")
    assert all(f.liquidity_indicator == "TAKER" for f in fills)
    assert sum((f.size for f in fills), Decimal(0)) == venue_order.filled_size
    accounts = {a.currency: a for a in await client.accounts()}
    assert accounts["BTC"].available_balance.value == venue_order.filled_size
    assert accounts["USD"].available_balance.value == Decimal(100_000) - spent


async def test_post_only_limit_rests_lists_and_cancels(client):
    book = await client.product_book("BTC-USD", limit=1)
    below = (book.pricebook.bids[0].price * Decimal("0.9")).quantize(Decimal("0.01"))
    gtc = await client.create_order(order(OrderKind.LIMIT_GTC, limit_price=below, post_only=True))
    end = LiveClock().now() + timedelta(hours=1)
    gtd = await client.create_order(
        order(OrderKind.LIMIT_GTD, limit_price=below, post_only=True, end_time=end)
    )
    open_orders = await client.list_orders(product_ids=["BTC-USD"], order_status=["OPEN"])
    assert {o.order_id for o in open_orders} == {gtc.order_id, gtd.order_id}  # two pages of 2
    gtd_view = next(o for o in open_orders if o.order_id == gtd.order_id)
    assert gtd_view.order_configuration["limit_limit_gtd"]["post_only"] is True
    assert gtd_view.time_in_force == "GOOD_UNTIL_DATE_TIME"
    usd = next(a for a in await client.accounts() if a.currency == "USD")
    assert usd.hold is not None and usd.hold.value > 0
    results = await client.cancel_orders([gtc.order_id, gtd.order_id, "no-such-order"])
    assert [(r.order_id, r.success) for r in results] == [
        (gtc.order_id, True), (gtd.order_id, True), ("no-such-order", False),
    ]  # fmt: skip
    assert (await client.order(gtc.order_id)).status == "CANCELLED"
    again = await client.cancel_orders([gtc.order_id])
    assert not again[0].success and again[0].failure_reason
    usd = next(a for a in await client.accounts() if a.currency == "USD")
    assert usd.hold is not None and usd.hold.value == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"base_size": Decimal("0.000000001")}, "INVALID_SIZE_PRECISION"),
        ({"base_size": Decimal("5000")}, "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE"),
        ({"base_size": Decimal("1000")}, "INSUFFICIENT_FUND"),
    ],
)
async def test_refused_orders_carry_coinbases_reason(client, fields, reason):
    with pytest.raises(OrderRejected) as caught:
        await client.create_order(order(OrderKind.MARKET_IOC, **fields))
    assert caught.value.failure_reason == reason


async def test_a_crossing_post_only_order_is_refused(client):
    book = await client.product_book("BTC-USD", limit=1)
    above_ask = book.pricebook.asks[0].price + Decimal("100")
    with pytest.raises(OrderRejected) as caught:
        await client.create_order(order(OrderKind.LIMIT_GTC, limit_price=above_ask,
                                        post_only=True))  # fmt: skip
    assert caught.value.failure_reason == "INVALID_LIMIT_PRICE_POST_ONLY"


@pytest.mark.parametrize(
    "fault",
    ["timeout_after_accept", "timeout_before_accept", "error_after_accept", "error_before_accept"],
)
async def test_an_unknown_outcome_ends_with_exactly_one_order(client, sim, fault):
    await sim.faults(create_order=[fault], hang_s=3)
    request = order(quote_size=Decimal("50"))
    placed = await client.create_order(request)
    assert placed.client_order_id == request.client_order_id
    assert placed.resolved_by_lookup == fault.endswith("after_accept")
    mine = [o for o in sim.venue.orders() if o.request.client_order_id == request.client_order_id]
    assert [o.order_id for o in mine] == [placed.order_id]


@pytest.mark.parametrize("mode", ["return_existing", "reject"])
async def test_a_repeated_client_order_id_returns_the_first_order(client, sim, mode):
    await sim.faults(duplicate_client_order_id=mode)
    request = order(quote_size=Decimal("20"))
    first = await client.create_order(request)
    second = await client.create_order(request)
    assert second.order_id == first.order_id
    assert len([o for o in sim.venue.orders() if o.request == request]) == 1


async def test_reads_retry_through_5xx_and_give_up_with_server_error(client, sim):
    await sim.faults(error_rate=1.0)
    with pytest.raises(ServerError, match="HTTP 503"):
        await client.product("BTC-USD")
    await sim.faults(error_rate=0.0)
    assert (await client.product("BTC-USD")).product_id == "BTC-USD"


async def test_429_with_an_html_body_is_waited_out_and_reported(key, limiter):
    reported_before = metric("ratelimit_429_reported_total", channel="private")
    async with running_sim(key, sim_private_rate_per_s=2) as sim:
        async with coinbase_client(sim.base_url, limiter, key, read_attempts=1) as impatient:
            outcomes = await asyncio.gather(
                *(impatient.product("BTC-USD") for _ in range(8)), return_exceptions=True
            )
        limited = [o for o in outcomes if isinstance(o, RateLimited)]
        assert limited, "the venue allows 2/s; eight at once must meet a 429"
        assert all(0 <= o.reset_after_s <= 1.0 for o in limited)  # the window ends within 1 s
        assert all(not isinstance(o, Exception) or isinstance(o, RateLimited) for o in outcomes)
        # The transport told the shared rate limiter, which holds the channel back for all.
        reported = metric("ratelimit_429_reported_total", channel="private") - reported_before
        assert reported == len(limited)
        async with coinbase_client(sim.base_url, limiter, key, read_attempts=6) as patient:
            products = await asyncio.gather(*(patient.product("ETH-USD") for _ in range(8)))
        assert {p.product_id for p in products} == {"ETH-USD"}


async def test_auth_failures_are_auth_errors(sim, limiter, key):
    stranger = CdpTestKey.generate("stranger")
    async with coinbase_client(sim.base_url, limiter, stranger) as rest:
        with pytest.raises(AuthError, match="401"):
            await rest.accounts()
    late = SimulatedClock(LiveClock().now() - timedelta(minutes=10))
    token = key.credentials().jwt_for("GET", sim.base_url.split("//")[1],
                                      "/api/v3/brokerage/accounts", late)  # fmt: skip
    answer = await sim.admin.get("/api/v3/brokerage/accounts",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 401 and "expired" in answer.json()["message"]
    host = sim.base_url.split("//")[1]
    token = key.credentials().jwt_for("GET", host, "/api/v3/brokerage/portfolios", LiveClock())
    answer = await sim.admin.get("/api/v3/brokerage/accounts",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 401 and "uri" in answer.json()["message"]
    answer = await sim.admin.get("/api/v3/brokerage/accounts")
    assert answer.status_code == 401


async def test_rate_limit_headers_on_every_answer(sim):
    answer = await sim.admin.get("/api/v3/brokerage/market/products")
    assert answer.status_code == 200
    assert int(answer.headers["x-ratelimit-limit"]) == 10
    assert int(answer.headers["x-ratelimit-remaining"]) < 10
    assert int(answer.headers["x-ratelimit-reset"]) > LiveClock().now().timestamp() - 1


async def test_an_unreachable_venue_is_not_an_unknown_outcome(limiter, key):
    async with coinbase_client("http://127.0.0.1:9", limiter, key, read_attempts=1) as rest:
        with pytest.raises(VenueUnreachable, match="cannot connect"):
            await rest.product("BTC-USD")
