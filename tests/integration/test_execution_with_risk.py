"""Risk and execution together (PAPER, real Redis and Postgres): entries fill on the paper
venue, and a flatten reaches flat through the real execution service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.bus import Publisher
from shared.clock import SimulatedClock
from shared.db import upgrade
from shared.messages import ProposalAction, TradeProposed
from shared.money import Side
from tests.support.execution import Market, execution_service
from tests.support.polling import eventually
from tests.support.risk import risk_service, seed_catalog

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
MARKETS = {
    "BTC-USD": ([("59990", "0.02"), ("59980", "0.05")], [("60010", "0.02"), ("60020", "0.05")]),
    "ETH-USD": ([("2999", "0.2"), ("2998", "0.5")], [("3001", "0.2"), ("3002", "0.5")]),
}


async def test_entries_fill_on_the_paper_venue_and_a_flatten_reaches_flat(
    redis, redis_url, bus_keys, pg_url, pg_engine
):
    upgrade(pg_url)
    clock = SimulatedClock(START)
    await seed_catalog(redis, bus_keys, clock)
    publisher = Publisher(redis, keys=bus_keys)
    markets = {product: Market(publisher, clock, product) for product in MARKETS}
    async with (
        risk_service(redis_url, bus_keys, pg_engine, clock) as risk,
        execution_service(redis_url, bus_keys, pg_engine, clock) as execution,
    ):
        await eventually(lambda: _ready(execution.client), what="execution ready")
        await eventually(lambda: _ready(risk.client), what="risk ready")
        for product, (bids, asks) in MARKETS.items():
            await markets[product].book(bids, asks)
            await markets[product].tick(bids[0][0], asks[0][0])
        await eventually(lambda: len(execution.service._quotes) == 2, what="quotes seen")

        for n, (product, (bids, asks)) in enumerate(MARKETS.items()):
            mid = (Decimal(bids[0][0]) + Decimal(asks[0][0])) / 2
            await markets[product].publish(TradeProposed(
                proposal_id=f"ema:{product}:{n}", strategy="ema", product_id=product,
                side=Side.BUY, action=ProposalAction.ENTRY, quote_size=Decimal("500"),
                reference_mid=mid, decided_at=clock.now(),
            ))  # fmt: skip
        # the entries rest at the best bids; trades through them fill them as maker
        await eventually(lambda: _resting(execution, 2), what="both entries resting")
        for product, (bids, asks) in MARKETS.items():
            below = str(Decimal(bids[0][0]) - 1)
            await markets[product].tick(below, asks[0][0], last=below, last_size="100")

        async def both_held():
            positions = (await risk.client.get("/v1/positions")).json()
            return {p["product_id"] for p in positions if Decimal(p["base"]) > 0} == set(MARKETS)

        await eventually(both_held, what="both positions held")
        response = await risk.client.post("/v1/flatten", json={"reason": "end of rehearsal"})
        assert response.status_code == 202
        flatten_id = response.json()["flatten_id"]

        async def done():
            clock.advance(timedelta(seconds=1))
            job = (await risk.client.get(f"/v1/flatten/{flatten_id}")).json()
            return job if job["status"] == "DONE" else None

        job = await eventually(done, within=20, what="the flatten to finish")
        positions = (await risk.client.get("/v1/positions")).json()
    assert {p: v["status"] for p, v in job["products"].items()} == dict.fromkeys(MARKETS, "FLAT")
    assert all(p["dust"] or Decimal(p["base"]) == 0 for p in positions)
    account = execution.service.venue.account
    assert account.ledger.available("BTC") == 0 and account.ledger.available("ETH") == 0


async def _ready(client) -> bool:
    return (await client.get("/readyz")).status_code == 200


def _resting(execution, count: int) -> bool:
    return len(execution.service.venue.account.engine.open_orders()) == count
