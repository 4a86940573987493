"""The market-data feed against a scripted Coinbase WebSocket server on a real socket."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from shared.coinbase.book import SequenceGap
from shared.coinbase.ws import (
    BookChanged,
    BookReset,
    CandlesReceived,
    Connected,
    Disconnected,
    FeedEvent,
    FeedSettings,
    GapDetected,
    MarketDataFeed,
    TickerReceived,
    TradesReceived,
    UserOrdersReceived,
)
from tests.support.polling import eventually
from tests.support.ws_script import (
    AwaitSubscribe,
    Close,
    Script,
    ScriptedServer,
    Send,
    SendRaw,
    l2_snapshot,
    l2_update,
)

D = Decimal
BTC, ETH = "BTC-USD", "ETH-USD"
SUBSCRIBED = (AwaitSubscribe("heartbeats"), AwaitSubscribe("level2"))  # both confirmed first


class Recorder:
    """The consumer: keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[FeedEvent] = []

    async def __call__(self, event: FeedEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


class BoundsRandom(random.Random):
    """Records each jitter range; waits either nothing or the whole range."""

    def __init__(self, take_upper: bool = False) -> None:
        super().__init__(0)
        self.bounds: list[tuple[float, float]] = []
        self.take_upper = take_upper

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return b if self.take_upper else a


async def free() -> None:
    return None


def make_feed(
    url: str,
    recorder: Recorder,
    *,
    acquire: Callable[[], Awaitable[object]] = free,
    jwt_factory: Callable[[], str] | None = None,
    rng: random.Random | None = None,
    **overrides: Any,
) -> MarketDataFeed:
    options: dict[str, Any] = {
        "product_ids": (BTC,), "channels": ("level2",), "heartbeat_timeout_s": 10.0,
        "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "subscribe_timeout_s": 10.0,
    }  # fmt: skip
    settings = FeedSettings(url=url, **{**options, **overrides})
    return MarketDataFeed(
        settings, acquire=acquire, jwt_factory=jwt_factory, rng=rng, on_event=recorder
    )


@asynccontextmanager
async def running(feed: MarketDataFeed) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        feed.stop()
        await asyncio.wait_for(task, timeout=5)


def subscribes(server: ScriptedServer, connection: int) -> int:
    """How many subscribes connection number ``connection`` has received so far."""
    if len(server.connections) <= connection:
        return 0
    return len(server.connections[connection].of_type("subscribe"))


def kinds(recorder: Recorder) -> list[str]:
    return [type(event).__name__ for event in recorder.events]


async def test_subscribes_once_per_channel_plus_heartbeats_with_a_fresh_jwt_never_logged() -> None:
    issued: list[str] = []

    def jwt_factory() -> str:
        issued.append(f"eyJ-token-{len(issued)}")
        return issued[-1]

    channels = ("level2", "ticker", "market_trades", "candles", "user")
    async with ScriptedServer() as server:
        with capture_logs() as logs:
            feed = make_feed(server.url, Recorder(), jwt_factory=jwt_factory,
                             product_ids=(BTC, ETH), channels=channels)  # fmt: skip
            async with running(feed):
                await eventually(lambda: subscribes(server, 0) == 6, within=5)
                await eventually(lambda: feed.messages_by_channel["subscriptions"] == 6, within=5)
    sent = server.connections[0].of_type("subscribe")
    assert sorted(m["channel"] for m in sent) == sorted([*channels, "heartbeats"])
    assert all(m["product_ids"] == [BTC, ETH] for m in sent)
    assert [m["jwt"] for m in sent] == issued and len(set(issued)) == 6
    assert server.connections[0].received == sent  # nothing else was sent
    assert logs, "the feed logs its connection"
    assert "eyJ-token" not in repr(logs)


async def test_without_a_jwt_factory_subscribes_carry_no_jwt() -> None:
    async with ScriptedServer() as server:
        feed = make_feed(server.url, Recorder(), channels=("ticker",))
        async with running(feed):
            await eventually(lambda: subscribes(server, 0) == 2, within=5)
    assert server.connections[0].received == [
        {"type": "subscribe", "product_ids": [BTC], "channel": "heartbeats"},
        {"type": "subscribe", "product_ids": [BTC], "channel": "ticker"},
    ]
    with pytest.raises(ValueError, match="jwt_factory"):
        make_feed(server.url, Recorder(), channels=("user",))


async def test_the_book_is_built_from_a_snapshot_and_absolute_updates() -> None:
    script = Script((
        *SUBSCRIBED,
        l2_update(BTC, ("bid", "100.50", "9")),  # before any snapshot: must be ignored
        l2_snapshot(BTC, ("bid", "100.50", "1"), ("bid", "100.40", "2"), ("offer", "100.60", "3")),
        l2_update(BTC, ("bid", "100.50", "0.5"), ("bid", "100.40", "0"), ("offer", "100.70", "4")),
    ))  # fmt: skip
    recorder = Recorder()
    async with ScriptedServer([script]) as server:
        feed = make_feed(server.url, recorder)
        async with running(feed):
            await eventually(lambda: len(recorder.of(BookChanged)) == 2, within=5)
            book = feed.books[BTC]
            assert book.ready
            assert book.bids(10) == [(D("100.50"), D("0.5"))]  # absolute size, not 1 + 0.5
            assert book.asks(10) == [(D("100.60"), D("3")), (D("100.70"), D("4"))]
    assert feed.ignored_updates == 1 and feed.gaps == 0 and feed.reconnects == 0
    assert [(e.is_snapshot, e.product_id) for e in recorder.of(BookChanged)] == [
        (True, BTC), (False, BTC),
    ]  # fmt: skip
    assert recorder.of(BookChanged)[0].event_time == datetime(
        2023, 2, 9, 20, 32, 50, 714964, tzinfo=UTC
    )
    assert feed.messages_by_channel == {"subscriptions": 2, "l2_data": 3}


async def test_ticker_trades_candles_and_user_orders_reach_the_consumer_typed() -> None:
    ticker = {"type": "ticker", "product_id": BTC, "price": "21932.98",
              "best_bid": "21931.98", "best_ask": "21933.98"}  # fmt: skip
    trade = {"trade_id": "1", "product_id": ETH, "price": "1260.01", "size": "0.3",
             "side": "SELL", "time": "2019-08-14T20:42:27.265Z"}  # fmt: skip
    candle = {"start": "1688998200", "high": "1867.72", "low": "1865.63", "open": "1867.38",
              "close": "1866.81", "volume": "0.20269406", "product_id": ETH}  # fmt: skip
    order = {"order_id": "o-1", "client_order_id": "c-1", "product_id": BTC,
             "order_side": "BUY", "order_type": "Limit", "status": "OPEN", "avg_price": "0",
             "cumulative_quantity": "0", "leaves_quantity": "0.01", "filled_value": "0",
             "total_fees": "0", "limit_price": "50000", "number_of_fills": "0",
             "creation_time": "2023-02-09T20:32:50.714964855Z"}  # fmt: skip
    script = Script((
        AwaitSubscribe("user"),
        Send("ticker", ({"type": "snapshot", "tickers": [ticker]},)),
        Send("market_trades", ({"type": "update", "trades": [trade]},)),
        Send("candles", ({"type": "snapshot", "candles": [candle]},)),
        Send("user", ({"type": "snapshot", "orders": [order]},)),
    ))  # fmt: skip
    recorder = Recorder()
    channels = ("ticker", "market_trades", "candles", "user")
    async with ScriptedServer([script]) as server:
        feed = make_feed(server.url, recorder, channels=channels, jwt_factory=lambda: "t")
        async with running(feed):
            await eventually(lambda: recorder.of(UserOrdersReceived), within=5)
    (got_ticker,) = recorder.of(TickerReceived)
    assert (got_ticker.ticker.price, got_ticker.ticker.best_ask) == (D("21932.98"), D("21933.98"))
    (trades,) = recorder.of(TradesReceived)
    assert not trades.is_snapshot and trades.trades[0].price == D("1260.01")
    (candles,) = recorder.of(CandlesReceived)
    assert candles.is_snapshot and candles.candles[0].close == D("1866.81")
    (orders,) = recorder.of(UserOrdersReceived)
    assert orders.orders[0].leaves_quantity == D("0.01") and orders.orders[0].status == "OPEN"
    assert feed.books == {}  # no level2 subscription, no books


async def test_a_dropped_message_resets_the_book_and_reconnects_for_a_fresh_snapshot() -> None:
    # Connection-wide numbering: confirmations take 0 and 1, so the snapshot is 2.
    first = Script((
        *SUBSCRIBED,
        l2_snapshot(BTC, ("bid", "100", "1"), ("offer", "101", "1")),  # 2
        l2_update(BTC, ("bid", "100", "5")),  # 3
        l2_update(BTC, ("bid", "100", "6"), drop=True),  # 4: lost
        l2_update(BTC, ("bid", "100", "7")),  # 5: reveals the gap
    ))  # fmt: skip
    second = Script((*SUBSCRIBED, l2_snapshot(BTC, ("bid", "99", "3"), ("offer", "102", "4"))))
    recorder = Recorder()
    async with ScriptedServer([first, second]) as server:
        feed = make_feed(server.url, recorder)
        async with running(feed):
            await eventually(lambda: feed.book_rebuilds == 1, within=5, what="a rebuilt book")
            assert feed.books[BTC].bids(5) == [(D("99"), D("3"))]
            assert feed.books[BTC].asks(5) == [(D("102"), D("4"))]
    assert recorder.of(GapDetected) == [GapDetected(SequenceGap(4, 5), None, "l2_data")]
    assert kinds(recorder)[:8] == [
        "Connected", "BookChanged", "BookChanged", "GapDetected", "BookReset",
        "Disconnected", "Connected", "BookChanged",
    ]  # fmt: skip
    assert recorder.of(BookReset) == [BookReset(BTC)]
    assert len(server.connections) == 2 and feed.reconnects == 1 and feed.gaps == 1


INTERLEAVED = (
    *SUBSCRIBED,
    l2_snapshot(BTC, ("bid", "100", "1")),
    l2_snapshot(ETH, ("bid", "10", "1")),
    l2_update(BTC, ("bid", "100", "2")),
    l2_update(ETH, ("bid", "10", "2")),
    l2_update(BTC, ("offer", "101", "3")),
    l2_update(ETH, ("offer", "11", "3")),
)


async def test_per_product_numbering_raises_no_false_gaps_with_interleaved_products() -> None:
    recorder = Recorder()
    async with ScriptedServer([Script(INTERLEAVED)], numbering="product") as server:
        feed = make_feed(server.url, recorder, product_ids=(BTC, ETH), sequence_scope="product")
        async with running(feed):
            await eventually(lambda: len(recorder.of(BookChanged)) == 6, within=5)
            assert feed.books[BTC].bids(1) == [(D("100"), D("2"))]
            assert feed.books[ETH].asks(1) == [(D("11"), D("3"))]
    assert feed.gaps == 0 and not recorder.of(GapDetected) and not recorder.of(BookReset)
    assert len(server.connections) == 1


async def test_per_product_numbering_read_connection_wide_is_a_gap() -> None:
    # The same frames judged connection-wide: the check above is not vacuous.
    recorder = Recorder()
    async with ScriptedServer([Script(INTERLEAVED)], numbering="product") as server:
        feed = make_feed(server.url, recorder, product_ids=(BTC, ETH))
        async with running(feed):
            await eventually(lambda: feed.gaps >= 1, within=5)


async def test_a_gap_in_one_product_resubscribes_only_that_product() -> None:
    # Per-product numbering: keys count from 0, 100, 200 in order of first use, so
    # confirmations are 0.., BTC's level2 100.. and ETH's 200..
    script = Script((
        *SUBSCRIBED,
        l2_snapshot(BTC, ("bid", "100", "1")),  # 100
        l2_snapshot(ETH, ("bid", "10", "1")),  # 200
        l2_update(BTC, ("bid", "100", "2")),  # 101
        l2_update(ETH, ("bid", "10", "2")),  # 201
        l2_update(BTC, ("bid", "100", "3"), drop=True),  # 102: lost
        l2_update(BTC, ("bid", "100", "4")),  # 103: reveals the gap; ignored
        l2_update(ETH, ("bid", "10", "5")),  # 202: ETH carries on
        AwaitSubscribe("level2", BTC, count=2),
        l2_snapshot(BTC, ("bid", "99", "7")),  # 104: the fresh snapshot
        l2_update(BTC, ("offer", "101", "8")),  # 105
    ))  # fmt: skip
    recorder = Recorder()
    async with ScriptedServer([script], numbering="product") as server:
        feed = make_feed(server.url, recorder, product_ids=(BTC, ETH), sequence_scope="product")
        async with running(feed):
            await eventually(lambda: len(recorder.of(BookChanged)) == 7, within=5)
            assert feed.books[BTC].bids(5) == [(D("99"), D("7"))]
            assert feed.books[BTC].asks(5) == [(D("101"), D("8"))]
            assert feed.books[ETH].bids(5) == [(D("10"), D("5"))]
    assert recorder.of(GapDetected) == [GapDetected(SequenceGap(102, 103), BTC, "l2_data")]
    assert recorder.of(BookReset) == [BookReset(BTC)]
    assert feed.book_rebuilds == 1 and feed.ignored_updates == 1 and feed.reconnects == 0
    assert len(server.connections) == 1
    assert server.connections[0].received[2:] == [
        {"type": "unsubscribe", "product_ids": [BTC], "channel": "level2"},
        {"type": "subscribe", "product_ids": [BTC], "channel": "level2"},
    ]


async def test_reconnects_after_the_server_closes_taking_a_token_before_every_request() -> None:
    journal: list[str] = []

    async def acquire() -> None:
        journal.append("acquire")

    async with ScriptedServer([Script((*SUBSCRIBED, Close()))], journal=journal) as server:
        recorder = Recorder()
        feed = make_feed(server.url, recorder, acquire=acquire)
        async with running(feed):
            await eventually(lambda: subscribes(server, 1) == 2, within=5)
            await eventually(lambda: feed.connected, within=5)
    requests = [entry for entry in journal if entry != "acquire"]
    assert requests == ["connect", "subscribe", "subscribe"] * 2
    for position, entry in enumerate(journal):
        if entry != "acquire":
            done = sum(1 for e in journal[:position] if e != "acquire")
            assert journal[:position].count("acquire") >= done + 1, journal
    assert journal.count("acquire") == len(requests)
    assert feed.reconnects == 1
    assert kinds(recorder) == ["Connected", "Disconnected", "Connected", "Disconnected"]
    assert recorder.events[-1] == Disconnected("stopped")


async def test_backoff_is_full_jitter_doubling_to_the_cap_and_restarts_after_a_snapshot() -> None:
    closing = Script((AwaitSubscribe("level2"), Close()))
    healthy = Script((AwaitSubscribe("level2"), l2_snapshot(BTC, ("bid", "1", "1")), Close()))
    rng = BoundsRandom()
    async with ScriptedServer([closing] * 4 + [healthy, closing]) as server:
        feed = make_feed(server.url, Recorder(), rng=rng,
                         backoff_initial_s=0.01, backoff_max_s=0.03)  # fmt: skip
        async with running(feed):
            await eventually(lambda: len(server.connections) == 7, within=5)
    assert [low for low, _ in rng.bounds] == [0] * 6
    assert [high for _, high in rng.bounds] == pytest.approx([0.01, 0.02, 0.03, 0.03, 0.01, 0.02])


async def test_silence_beyond_the_heartbeat_timeout_reconnects() -> None:
    script = Script((*SUBSCRIBED, l2_snapshot(BTC, ("bid", "1", "1"))))  # then silence
    recorder = Recorder()
    async with ScriptedServer([script]) as server:
        feed = make_feed(server.url, recorder, heartbeat_timeout_s=0.3)
        async with running(feed):
            await eventually(lambda: len(server.connections) >= 2, within=5)
            await eventually(lambda: server.connections[0].closed, within=5)
    reasons = [event.reason for event in recorder.of(Disconnected)]
    assert "no message within heartbeat_timeout_s" in reasons
    assert recorder.of(BookReset)[0] == BookReset(BTC)  # the stale book was dropped


async def test_a_subscribe_left_unconfirmed_reconnects() -> None:
    async with ScriptedServer([Script(confirm=False)]) as server:
        recorder = Recorder()
        feed = make_feed(server.url, recorder, subscribe_timeout_s=0.3)
        async with running(feed):
            await eventually(lambda: len(server.connections) >= 2, within=5)
    reason = recorder.of(Disconnected)[0].reason
    assert reason == "no subscriptions confirmation within subscribe_timeout_s"
    assert server.connections[0].sent == []  # nothing at all came back on the first one


@pytest.mark.parametrize(
    ("frame", "reason_starts"),
    [
        ({"type": "error", "message": "failure to subscribe"}, "server error: failure to"),
        ({"channel": "l2_data", "events": "nonsense"}, "malformed L2DataMessage"),
    ],
)
async def test_an_error_or_malformed_frame_reconnects(
    frame: dict[str, Any], reason_starts: str
) -> None:
    async with ScriptedServer([Script((*SUBSCRIBED, SendRaw(frame)))]) as server:
        recorder = Recorder()
        feed = make_feed(server.url, recorder)
        async with running(feed):
            await eventually(lambda: len(server.connections) >= 2, within=5)
    assert recorder.of(Disconnected)[0].reason.startswith(reason_starts)


async def test_stop_ends_run_promptly_and_leaves_no_task_behind() -> None:
    async with ScriptedServer() as server:
        recorder = Recorder()
        feed = make_feed(server.url, recorder)
        task = asyncio.create_task(feed.run())
        await eventually(lambda: feed.connected, within=5)
        feed.stop()
        await asyncio.wait_for(task, timeout=2)
        assert task.result() is None and not feed.connected
        assert recorder.events == [Connected(), Disconnected("stopped")]
        await eventually(lambda: server.connections[0].closed, within=2)
        current = asyncio.current_task()
        await eventually(lambda: not [t for t in asyncio.all_tasks() if t is not current],
                         within=2, what="every task finished")  # fmt: skip


async def test_stop_interrupts_a_long_backoff() -> None:
    async with ScriptedServer([Script((AwaitSubscribe("level2"), Close()))]) as server:
        recorder = Recorder()
        feed = make_feed(server.url, recorder, rng=BoundsRandom(take_upper=True),
                         backoff_initial_s=30.0, backoff_max_s=30.0)  # fmt: skip
        task = asyncio.create_task(feed.run())
        await eventually(lambda: recorder.of(Disconnected), within=5)
        feed.stop()
        await asyncio.wait_for(task, timeout=2)  # the backoff would have been 30 s
    assert len(server.connections) == 1
