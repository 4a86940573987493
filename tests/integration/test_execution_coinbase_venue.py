"""The LIVE venue against exchange-sim over HTTP, through the real rate limiter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.execution.coinbase_venue import CoinbaseVenue
from services.execution.orders import CancelVenueOrder, LookupVenueOrder
from services.execution.venues import (
    ReconcileIncomplete,
    VenueAccepted,
    VenueDone,
    VenueFill,
    VenueLookup,
    VenueReport,
    WorkingOrder,
)
from shared.clock import LiveClock
from shared.coinbase.rest import CoinbaseRest
from shared.matching.types import OrderKind, OrderRequest
from shared.messages import Liquidity, OrderStatus
from shared.money import Side
from shared.ratelimit import RateLimitClient
from tests.support.polling import eventually
from tests.support.venue import CdpTestKey, SimHandle, coinbase_client

pytestmark = pytest.mark.slow

PRODUCT = "BTC-USD"


@pytest.fixture
async def client(
    sim: SimHandle, limiter: RateLimitClient, key: CdpTestKey
) -> AsyncIterator[CoinbaseRest]:
    async with coinbase_client(sim.base_url, limiter, key, timeout_s=1.0) as rest:
        yield rest


def now() -> datetime:
    return LiveClock().now()


def market(quote: str = "100") -> OrderRequest:
    return OrderRequest(str(uuid.uuid4()), PRODUCT, Side.BUY, OrderKind.MARKET_IOC,
                        quote_size=Decimal(quote))  # fmt: skip


async def resting(client: CoinbaseRest, fraction: str = "0.5") -> OrderRequest:
    """A post-only buy at ``fraction`` of the best bid: far from the market, it rests."""
    bid = (await client.product_book(PRODUCT, limit=1)).pricebook.bids[0].price
    price = (bid * Decimal(fraction)).quantize(Decimal("0.01"))
    return OrderRequest(str(uuid.uuid4()), PRODUCT, Side.BUY, OrderKind.LIMIT_GTC,
                        base_size=Decimal("0.001"), limit_price=price, post_only=True)  # fmt: skip


def working(request: OrderRequest, venue_order_id: str | None, sent_at: datetime) -> WorkingOrder:
    return WorkingOrder(request.client_order_id, request.product_id, venue_order_id, sent_at)


def at_venue(sim: SimHandle, coid: str) -> list[str]:
    return [o.order_id for o in sim.venue.orders() if o.request.client_order_id == coid]


def assert_the_venues_fills(sim: SimHandle, venue_order_id: str, fills: list[VenueFill]) -> None:
    """The reported fills are the venue's own: trade ids, prices, sizes, fees, liquidity."""
    real = sim.venue.order(venue_order_id).fills
    assert [(f.trade_id, f.price, f.size, f.fee, f.liquidity) for f in fills] == [
        (r.trade_id, r.price, r.size, r.commission, Liquidity(r.liquidity.value)) for r in real
    ]


def split(
    reports: list[VenueReport],
) -> tuple[list[VenueReport], list[VenueFill], list[VenueReport]]:
    """(what comes before the fills, the fills, what comes after); fills must be contiguous."""
    kinds = [isinstance(r, VenueFill) for r in reports]
    first = kinds.index(True) if True in kinds else len(reports)
    last = len(kinds) - kinds[::-1].index(True) if True in kinds else len(reports)
    fills = [r for r in reports[first:last] if isinstance(r, VenueFill)]
    assert len(fills) == last - first, f"fills are not contiguous: {reports}"
    return reports[:first], fills, reports[last:]


async def test_a_market_order_is_accepted_then_polled_to_its_fills_and_end(
    client: CoinbaseRest, sim: SimHandle
) -> None:
    venue, request, sent = CoinbaseVenue(client), market(), now()
    [accepted] = await venue.send(request, sent)
    assert isinstance(accepted, VenueAccepted)
    assert at_venue(sim, request.client_order_id) == [accepted.venue_order_id]
    order = [working(request, accepted.venue_order_id, sent)]
    before, fills, after = split(await venue.poll(order, sent))
    assert before == [] and fills
    assert_the_venues_fills(sim, accepted.venue_order_id, fills)
    assert all(f.fee > 0 and f.liquidity is Liquidity.TAKER for f in fills)
    assert after == [VenueDone(request.client_order_id, OrderStatus.FILLED, "")]
    assert await venue.poll(order, sent + timedelta(seconds=5)) == []


async def test_poll_is_throttled_to_its_interval(client: CoinbaseRest) -> None:
    venue, first, second, t0 = CoinbaseVenue(client, poll_interval_s=1.0), market(), market(), now()
    [placed] = await venue.send(first, t0)
    assert isinstance(placed, VenueAccepted)
    assert await venue.poll([working(first, placed.venue_order_id, t0)], t0)
    [again] = await venue.send(second, t0)
    assert isinstance(again, VenueAccepted)
    both = [working(first, placed.venue_order_id, t0), working(second, again.venue_order_id, t0)]
    assert await venue.poll(both, t0 + timedelta(seconds=0.5)) == []
    reports = await venue.poll(both, t0 + timedelta(seconds=1))
    assert {r.client_order_id for r in reports} == {second.client_order_id}
    assert isinstance(reports[-1], VenueDone) and reports[-1].status is OrderStatus.FILLED


async def test_a_resting_post_only_order_is_cancelled_after_reading_it_back(
    client: CoinbaseRest, sim: SimHandle
) -> None:
    venue, request, sent = CoinbaseVenue(client), await resting(client), now()
    [accepted] = await venue.send(request, sent)
    assert isinstance(accepted, VenueAccepted)
    order = [working(request, accepted.venue_order_id, sent)]
    assert await venue.poll(order, sent) == []  # open, nothing filled
    cancelled = await venue.send(CancelVenueOrder(request.client_order_id), sent)
    assert cancelled == [
        VenueDone(request.client_order_id, OrderStatus.CANCELLED, "USER_REQUESTED")
    ]
    assert sim.venue.order(accepted.venue_order_id).status.value == "CANCELLED"
    assert await venue.poll(order, sent + timedelta(seconds=5)) == []
    assert await venue.send(CancelVenueOrder(request.client_order_id), sent) == []


async def test_a_cancel_without_a_venue_id_looks_the_order_up_first(
    client: CoinbaseRest, sim: SimHandle
) -> None:
    request, sent = await resting(client), now()
    [accepted] = await CoinbaseVenue(client).send(request, sent)
    assert isinstance(accepted, VenueAccepted)
    restarted = CoinbaseVenue(client)  # knows the order only as a working one, without an id
    assert await restarted.poll([working(request, None, sent)], sent) == []
    coid = request.client_order_id
    assert await restarted.send(CancelVenueOrder(coid), sent) == [
        VenueAccepted(coid, accepted.venue_order_id), VenueLookup(coid, True),
        VenueDone(coid, OrderStatus.CANCELLED, "USER_REQUESTED"),
    ]  # fmt: skip


async def test_a_cancel_that_lost_the_race_to_a_fill_reports_the_fill(
    client: CoinbaseRest, sim: SimHandle
) -> None:
    venue, request, sent = CoinbaseVenue(client), market(), now()
    [accepted] = await venue.send(request, sent)
    assert isinstance(accepted, VenueAccepted)
    # Not polled yet: the cancel is refused (the order is done) and the read-back tells why.
    before, fills, after = split(await venue.send(CancelVenueOrder(request.client_order_id), sent))
    assert before == []
    assert_the_venues_fills(sim, accepted.venue_order_id, fills)
    assert after == [VenueDone(request.client_order_id, OrderStatus.FILLED, "")]


async def test_a_resting_order_the_market_trades_through_reports_maker_fills(
    client: CoinbaseRest, sim: SimHandle
) -> None:
    venue = CoinbaseVenue(client, poll_interval_s=0)
    for _ in range(5):  # at the best bid it may meet a market that just moved: try again
        request, sent = await resting(client, "1"), now()
        [answer] = await venue.send(request, sent)
        if isinstance(answer, VenueAccepted):
            break
    assert isinstance(answer, VenueAccepted)
    order = [working(request, answer.venue_order_id, sent)]
    reports: list[VenueReport] = []

    async def ended() -> bool:
        reports.extend(await venue.poll(order, now()))
        return any(isinstance(r, VenueDone) for r in reports)

    await eventually(ended, what="the market to fill the resting order")
    before, fills, after = split(reports)
    assert before == [] and after == [VenueDone(request.client_order_id, OrderStatus.FILLED, "")]
    assert_the_venues_fills(sim, answer.venue_order_id, fills)
    assert all(f.liquidity is Liquidity.MAKER and f.fee > 0 for f in fills)
    assert sum(f.size for f in fills) == request.base_size


async def test_a_crossing_post_only_order_is_rejected_with_coinbases_reason(
    client: CoinbaseRest,
) -> None:
    ask = (await client.product_book(PRODUCT, limit=1)).pricebook.asks[0].price
    request = OrderRequest(str(uuid.uuid4()), PRODUCT, Side.BUY, OrderKind.LIMIT_GTC,
                           base_size=Decimal("0.001"), limit_price=ask + 100,
                           post_only=True)  # fmt: skip
    assert await CoinbaseVenue(client).send(request, now()) == [
        VenueDone(request.client_order_id, OrderStatus.REJECTED, "INVALID_LIMIT_PRICE_POST_ONLY")
    ]


@pytest.mark.parametrize("resolve_attempts", [4, 1])
@pytest.mark.parametrize(
    "fault",
    ["timeout_after_accept", "timeout_before_accept", "error_after_accept", "error_before_accept"],
)
async def test_a_create_order_fault_leaves_at_most_one_order_and_says_so(
    sim: SimHandle, limiter: RateLimitClient, key: CdpTestKey, fault: str, resolve_attempts: int
) -> None:
    await sim.faults(create_order=[fault], hang_s=1.5)
    request, sent = market("50"), now()
    async with coinbase_client(sim.base_url, limiter, key, timeout_s=1.0,
                               resolve_attempts=resolve_attempts) as rest:  # fmt: skip
        venue = CoinbaseVenue(rest)
        reports = await venue.send(request, sent)
        if not reports:  # the client gave up: the pending TTL's lookup settles it
            reports = await venue.send(LookupVenueOrder(request.client_order_id), sent)
    placed = at_venue(sim, request.client_order_id)
    coid = request.client_order_id
    if resolve_attempts > 1:  # the client resolved it: looked up, resent if missing
        assert len(placed) == 1 and reports == [VenueAccepted(coid, placed[0])]
    elif fault.endswith("after_accept"):
        assert len(placed) == 1
        before, fills, after = split(reports)
        assert before == [VenueAccepted(coid, placed[0]), VenueLookup(coid, True)]
        assert_the_venues_fills(sim, placed[0], fills)
        assert after == [VenueDone(coid, OrderStatus.FILLED, "")]
    else:
        assert placed == [] and reports == [VenueLookup(coid, False)]


async def test_a_lookup_of_an_order_never_sent_finds_nothing(client: CoinbaseRest) -> None:
    venue, coid = CoinbaseVenue(client), str(uuid.uuid4())
    # Without its product the venue cannot look an order up, and "not found" is not safe.
    assert await venue.send(LookupVenueOrder(coid), now()) == []
    ghost = WorkingOrder(coid, PRODUCT, None, now())
    assert await venue.poll([ghost], now()) == []  # no venue id: not polled, but remembered
    assert await venue.send(LookupVenueOrder(coid), now()) == [VenueLookup(coid, False)]


async def test_reconcile_after_a_restart_reports_what_happened(
    client: CoinbaseRest, sim: SimHandle
) -> None:
    first, sent = CoinbaseVenue(client), now()
    filled, rests = market(), await resting(client)
    [filled_ok] = await first.send(filled, sent)
    [rests_ok] = await first.send(rests, sent)
    assert isinstance(filled_ok, VenueAccepted) and isinstance(rests_ok, VenueAccepted)
    never = market()
    left = [
        working(filled, filled_ok.venue_order_id, sent),
        working(rests, None, sent),  # sent, but the answer was lost before the restart
        working(never, None, sent),  # the run died before it went out
    ]
    for budget in (1, 2):  # orders by id, then one lookup per product, then fills
        with pytest.raises(ReconcileIncomplete, match="budget"):
            await CoinbaseVenue(client, reconcile_budget=budget).reconcile(left, now())
    restarted = CoinbaseVenue(client, reconcile_budget=3)
    reports = await restarted.reconcile(left, now())
    a, b, c = filled.client_order_id, rests.client_order_id, never.client_order_id
    before, fills, after = split([r for r in reports if r.client_order_id == a])
    assert before == [VenueAccepted(a, filled_ok.venue_order_id)]
    assert_the_venues_fills(sim, filled_ok.venue_order_id, fills)
    assert after == [VenueDone(a, OrderStatus.FILLED, "")]
    assert [r for r in reports if r.client_order_id == b] == [
        VenueAccepted(b, rests_ok.venue_order_id), VenueLookup(b, True),
    ]  # fmt: skip
    assert [r for r in reports if r.client_order_id == c] == [VenueLookup(c, False)]
    # The restarted venue now follows the resting order by its venue id.
    assert await restarted.send(CancelVenueOrder(b), now()) == [
        VenueDone(b, OrderStatus.CANCELLED, "USER_REQUESTED")
    ]
