"""market-data against exchange-sim over real Redis: candles equal the venue's, gaps repaired."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from shared.bus import BusKeys
from shared.messages import BookUpdated, TickUpdated, decode
from shared.products import LatestTicks, ProductCatalog
from tests.support.market import market_stack, published_candles, venue_candles
from tests.support.polling import eventually, metric

pytestmark = pytest.mark.timeout(120)


async def _candles_by_route(redis: Any, keys: BusKeys) -> dict[tuple[str, int], list[Any]]:
    routes: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for _entry, _envelope, candle in await published_candles(redis, keys):
        routes[(candle.product_id, candle.granularity_s)].append(candle)
    return routes


async def _assert_equal_to_venue(stack: Any, redis: Any, keys: BusKeys) -> int:
    """Every published candle equals the venue's; no bucket of the venue is missing or doubled."""
    checked = 0
    for (product_id, granularity), candles in (await _candles_by_route(redis, keys)).items():
        starts = [int(c.start.timestamp()) for c in candles]
        assert starts == sorted(set(starts)), f"{product_id}/{granularity}: out of order or twice"
        venue = await venue_candles(stack.sim, product_id, granularity, starts[0], starts[-1] + 1)
        assert sorted(venue) == starts, f"{product_id}/{granularity}: buckets differ from venue"
        for candle in candles:
            expected = venue[int(candle.start.timestamp())]
            got = (candle.open, candle.high, candle.low, candle.close, candle.volume)
            want = (expected.open, expected.high, expected.low, expected.close, expected.volume)
            assert got == want, f"{product_id}/{granularity} {candle.start}: {got} != {want}"
            checked += 1
    return checked


def _built_from_trades() -> float:
    return metric("md_candles_published_total", granularity_s="60", source="trades")


def _repaired() -> float:
    return metric("md_candles_published_total", granularity_s="60", source="rest")


async def test_publishes_ticks_books_products_and_candles_equal_to_the_venue(
    redis_url: str, redis: Any, bus_keys: BusKeys
) -> None:
    built_before = _built_from_trades()
    async with market_stack(redis_url, bus_keys) as stack:
        await eventually(lambda: _built_from_trades() >= built_before + 8, within=30,
                         what="eight one-minute candles built from trades")  # fmt: skip
        ticks = await redis.xrange(bus_keys.stream(TickUpdated.STREAM), count=50)
        books = await redis.xrange(bus_keys.stream(BookUpdated.STREAM), count=50)
        catalog = await ProductCatalog(redis, bus_keys.prefix).all()
        # The backfill (30 buckets back, from REST) joins the live candles without a hole.
        checked = await _assert_equal_to_venue(stack, redis, bus_keys)
    assert checked >= 2 * (30 + 8)
    assert {decode(f[b"env"]).data.product_id for _, f in ticks} == {"BTC-USD", "ETH-USD"}
    book = decode(books[-1][1][b"env"]).data
    assert isinstance(book, BookUpdated) and 0 < len(book.bids) <= 10 and len(book.asks) > 0
    assert set(catalog) == {"BTC-USD", "ETH-USD"}
    assert catalog["BTC-USD"].entries_allowed and catalog["BTC-USD"].price_increment > 0
    # each product's newest tick is kept beside the stream, for readers of the latest only
    newest = {}
    for _entry, fields in await redis.xrevrange(bus_keys.stream(TickUpdated.STREAM), count=500):
        envelope = decode(fields[b"env"])
        newest.setdefault(envelope.data.product_id, envelope)
    latest = LatestTicks(redis, bus_keys.prefix)
    assert set(newest) == {"BTC-USD", "ETH-USD"}
    for product_id, envelope in newest.items():
        assert await latest.get(product_id) == envelope


@pytest.mark.parametrize("scope", ["connection", "product"])
async def test_a_sequence_gap_rebuilds_the_book_and_never_yields_a_wrong_candle(
    redis_url: str, redis: Any, bus_keys: BusKeys, scope: str
) -> None:
    sim = {"sim_sequence_scope": scope}
    async with market_stack(redis_url, bus_keys, sim=sim, md_sequence_scope=scope) as stack:
        worker = stack.worker
        await eventually(lambda: worker.feed and worker.feed.books and worker.backfilled,
                         within=20, what="market-data running and backfilled")  # fmt: skip
        await eventually(_built_from_trades, within=20, what="a candle built from trades")
        repaired_before, gaps_before = _repaired(), worker.feed.gaps
        # Lose messages on every channel for a moment: trades go missing with the books.
        await stack.sim.faults(ws_drop_rate=0.5)
        await eventually(lambda: worker.feed.gaps > gaps_before, within=10, what="a gap")
        await stack.sim.faults(ws_drop_rate=0)
        await eventually(lambda: worker.feed.book_rebuilds > 0, within=20, what="book rebuilt")
        await eventually(lambda: _repaired() > repaired_before, within=20,
                         what="a candle fetched from REST for the broken bucket")  # fmt: skip
        built = _built_from_trades()
        await eventually(lambda: _built_from_trades() >= built + 4, within=30,
                         what="candles built from trades again after the gap")  # fmt: skip
        assert await _assert_equal_to_venue(stack, redis, bus_keys) > 0
