"""The backtest: the services' own cores driven over history with a simulated clock.

Per product, each candle becomes market events in time order (its path's waypoints,
then its close); a product given by its trade prints instead has each print as a quote
and the candles market-data would build from them (its :class:`CandleBuilder`) closing
at their ends. All products' events merge by time. The cores are the ones the services
run:

- signal's :class:`SignalEngine` with the configured strategies, fed closed candles
  (aggregated to each strategy's granularity) and turned into proposals by
  ``to_proposal``, with the mid at the decision as the reference, as signal does;
- risk's :class:`RiskEngine`, deciding proposals, firing stops and take-profits on the
  quotes, applying fills and intent ends;
- execution's :class:`ExecutionService` (order state machine, reports) over the
  :class:`PaperVenue` (the shared matching engine and balances), with an in-memory store
  and report sink in place of Postgres and Redis, and its timer loop run every
  ``timer_step`` while an intent is open.

Effects are applied in the order the services publish them: a decision, then its
cancels, then its intents; execution's reports go to risk at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from services.backtest.market import ModelMarket, Waypoint, candle_time, waypoints
from services.backtest.memory import MemoryReports, MemoryStore
from services.execution.paper import PaperVenue
from services.execution.service import ExecutionService
from services.market_data.candles import CandleBuilder, Route, bucket_start
from services.risk.engine import Effects, RiskEngine
from services.risk.portfolio import AppliedFill
from services.risk.service import product_rules
from services.signal.engine import SignalEngine
from services.signal.proposals import to_proposal
from services.signal.strategies.base import Strategy
from shared.candle_files import Candle
from shared.clock import SimulatedClock
from shared.coinbase.ws_messages import Trade
from shared.config.models import AppConfig
from shared.matching.types import FeeRates
from shared.messages import (
    IntentFinished,
    OrderFilled,
    Payload,
    ProposalAction,
    ProposalDecided,
    TradeProposed,
    TradingMode,
)
from shared.money import Side
from shared.products import ProductInfo
from shared.slippage import CostModel
from shared.trade_files import TradePrint

__all__ = ["Backtest", "BacktestOptions", "ProductHistory", "ProductTrades"]

_QUOTE, _CLOSE = 0, 1  # at one moment: every quote first, then the candles that closed
_BUILT_ALONE_S = 60  # the candles of a traded product no strategy reads: market-data's finest


@dataclass(frozen=True)
class BacktestOptions:
    capital: Decimal = Decimal(10_000)
    latency: timedelta = timedelta(milliseconds=100)
    depletion: timedelta = timedelta(seconds=10)
    timer_step: timedelta = timedelta(seconds=1)
    trade_from: datetime | None = None  # candles ending earlier only warm the strategies up


@dataclass
class ProductHistory:
    """One product's candles, ascending, at one granularity."""

    product_id: str
    granularity_s: int
    candles: Iterable[Candle]


@dataclass
class ProductTrades:
    """One product's trade prints, ascending by time; its candles are built from them."""

    product_id: str
    prints: Iterable[TradePrint]


@dataclass
class Observers:
    proposal: list[Callable[[TradeProposed], None]] = field(default_factory=list)
    decision: list[Callable[[ProposalDecided], None]] = field(default_factory=list)
    fill: list[Callable[[OrderFilled], None]] = field(default_factory=list)
    candle: list[Callable[[str, Candle], None]] = field(default_factory=list)


class Backtest:
    def __init__(
        self,
        config: AppConfig,
        strategies: Sequence[Strategy],
        products: Mapping[str, ProductInfo],
        cost: CostModel,
        options: BacktestOptions,
    ) -> None:
        self.options = options
        self.clock = SimulatedClock(candle_time(0))
        self.signal = SignalEngine(strategies)
        self.risk = RiskEngine(
            config.policy.risk, options.capital, rules=product_rules(config, products)
        )
        tiers = {p.product_id: int(p.tier) for p in config.universe.products}
        rules = {product_id: info.rules() for product_id, info in products.items()}
        self.market = ModelMarket(cost, rules, {p: tiers.get(p, 3) for p in rules})
        maker, taker = cost.fee_rates()
        self.venue = PaperVenue(
            rules, fees=FeeRates(maker=maker, taker=taker), balances={"USD": options.capital},
            latency=options.latency, depletion=options.depletion, run_id="backtest",
        )  # fmt: skip
        self.reports = MemoryReports()
        self.execution = ExecutionService(
            config=config, venue=self.venue, store=MemoryStore(), reports=self.reports,
            clock=self.clock, mode=TradingMode.BACKTEST, products=dict(products),
            quote_max_age_s=86_400.0, costs=cost,
        )  # fmt: skip
        self.observers = Observers()
        self.exit_reasons: dict[str, str] = {}  # working exit intent id -> why it sells
        self._marks: dict[str, tuple[Waypoint, int]] = {}  # product -> last quote risk saw
        self._changes = 0  # counts risk or execution effects and timer runs
        self._next_timer: datetime | None = None
        self._granularities = _granularities(strategies)
        self._built: dict[str, int] = {}  # product given by prints -> its candles' granularity

    # --- the run ----------------------------------------------------------------------

    async def run(self, histories: Sequence[ProductHistory | ProductTrades]) -> None:
        """Every product's history, candles or prints, merged by time."""
        streams = []
        for index, history in enumerate(histories):
            if isinstance(history, ProductTrades):
                built = self._built_granularities(history.product_id)
                self._built[history.product_id] = built[0]
                streams.append(_print_events(index, history, built))
            else:
                streams.append(_events(index, history))
        for moment, kind, product_id, candle, granularity_s, point in _merged(streams):
            if kind == _QUOTE:
                await self._crossings(product_id, point)  # before the clock reaches the point
                await self._advance_to(moment)
                if candle is None:  # a print
                    self.market.set_print(product_id, point.mid)
                elif point.time == candle_time(candle.start):
                    self.market.set_candle(product_id, candle, granularity_s)
                await self._quote(product_id, point)
            else:
                await self._advance_to(moment)
                if candle is not None:
                    await self._close(product_id, candle, granularity_s)

    def _built_granularities(self, product_id: str) -> list[int]:
        """The candles to build from a product's prints: the finest first (the one the
        equity is sampled on, as a candle file's own), then each other strategy's."""
        wanted = list(self._granularities.get(product_id, {}))
        finest = min(wanted, default=_BUILT_ALONE_S)
        return [finest, *(granularity for granularity in wanted if granularity != finest)]

    async def _advance_to(self, moment: datetime) -> None:
        """Run execution's timer loop up to ``moment`` while any intent is open."""
        while self._next_timer is not None and self._next_timer <= moment:
            at = self._next_timer
            for product_id in self._working_products():  # a level crossed on the way there
                mid = self.market.mid_at(product_id, at)
                if mid is not None:
                    await self._crossings(product_id, Waypoint(at, mid))
            self.clock.set(at)
            for product_id in self._working_products():
                mid = self.market.mid_at(product_id, at)
                if mid is not None:
                    await self._quote(product_id, Waypoint(at, mid))
            await self.execution.on_timer()
            self._changes += 1
            await self._route_reports()
            self._schedule_timer()
        if moment > self.clock.now():
            self.clock.set(moment)

    def _working_products(self) -> set[str]:
        return {machine.intent.product_id for machine in self.execution.open_intents()}

    def _schedule_timer(self) -> None:
        if not self.execution.open_intents():
            self._next_timer = None
        elif self._next_timer is None or self._next_timer <= self.clock.now():
            self._next_timer = self.clock.now() + self.options.timer_step

    # --- market -----------------------------------------------------------------------

    async def _crossings(self, product_id: str, point: Waypoint) -> None:
        """A stop or take-profit the path crosses on its way to ``point`` fires where it is
        crossed, at that moment: the clock, the venue's book and risk's tick are there.
        Prints jump from one price to the next, so one crossed between two fires at the
        second (in ``_quote``)."""
        seen = self._marks.get(product_id)
        if seen is None or seen[0] == point or product_id in self._built:
            return
        if not self._risk_watches(product_id):
            return
        levels = self.risk.exit_levels(product_id)
        for level in levels or ():
            crossing = self.market.crossing(product_id, level, seen[0], point)
            if crossing is not None and crossing.time < point.time:
                await self._advance_to(crossing.time)  # timers first: they may change levels
                if self.risk.exit_levels(product_id) == levels:
                    await self._risk_tick(product_id, crossing)
                return

    async def _quote(self, product_id: str, point: Waypoint) -> None:
        """A new mid: to the venue and execution while they work the product, to risk
        while it holds or trades it."""
        if self._executing(product_id):
            self._to_venue(product_id, point.mid)
        if not self._risk_watches(product_id):
            self._marks.pop(product_id, None)
            return
        if self._repeats(product_id, point):
            return
        await self._risk_tick(product_id, point)

    async def _risk_tick(self, product_id: str, point: Waypoint) -> None:
        bid, ask = self.market.quote(product_id, point.mid)
        await self._apply(self.risk.on_tick(product_id, bid, ask, self.clock.now()))
        self._marks[product_id] = (point, self._changes)

    def _repeats(self, product_id: str, point: Waypoint) -> bool:
        """The very quote risk took last, at the same moment, with nothing decided, filled
        or timed since: it would mark, watch and trigger exactly as it did then (a candle
        opening where the last one closed)."""
        return self._marks.get(product_id) == (point, self._changes)

    def _to_venue(self, product_id: str, mid: Decimal) -> None:
        now = self.clock.now()
        self.venue.on_levels(product_id, list(self.market.levels(product_id, mid)), now)
        bid, ask = self.market.quote(product_id, mid)
        self.execution.on_quote(product_id, bid, ask)

    def _executing(self, product_id: str) -> bool:
        return product_id in self._working_products()

    def _risk_watches(self, product_id: str) -> bool:
        book = self.risk.book
        return book.portfolio.base(product_id) != 0 or bool(book.intents.for_product(product_id))

    # --- candles and proposals --------------------------------------------------------

    async def _close(self, product_id: str, candle: Candle, granularity_s: int) -> None:
        """A candle of a file (aggregated here to each strategy's granularity) or one built
        from prints (at its strategies' granularity already)."""
        built = self._built.get(product_id)
        if built is None or built == granularity_s:
            for watch_candle in self.observers.candle:
                watch_candle(product_id, candle)
        if built is None:
            for granularity, closed in self._aggregate(product_id, candle, granularity_s):
                await self._on_closed(product_id, granularity, closed)
        elif granularity_s in self._granularities.get(product_id, {}):
            await self._on_closed(product_id, granularity_s, candle)

    async def _on_closed(self, product_id: str, granularity: int, closed: Candle) -> None:
        end = candle_time(closed.start + granularity)
        acting = self.options.trade_from is None or end >= self.options.trade_from
        for signal in self.signal.on_candle(product_id, granularity, closed):
            if not acting:
                continue  # history: strategies learn, nothing is proposed (as in signal)
            now = self.clock.now()
            mid = self.market.mid_at(product_id, now) or signal.reference_price
            proposal = to_proposal(signal, mid, now)
            for watch_proposal in self.observers.proposal:
                watch_proposal(proposal)
            effects = self.risk.on_proposal(proposal, now)
            issued = {issued.order.intent_id for issued in effects.intents}
            if signal.action is ProposalAction.EXIT and proposal.proposal_id in issued:
                self.exit_reasons[proposal.proposal_id] = signal.reason
            await self._apply(effects)

    def _aggregate(
        self, product_id: str, candle: Candle, granularity_s: int
    ) -> Iterator[tuple[int, Candle]]:
        for granularity, bucket in self._granularities.get(product_id, {}).items():
            if granularity == granularity_s:
                yield granularity, candle
                continue
            for closed in bucket.add(candle, granularity_s):
                yield granularity, closed

    # --- effects ----------------------------------------------------------------------

    async def _apply(self, effects: Effects) -> None:
        """Risk's effects in the order risk publishes them, then execution's reports."""
        if not _quiet(effects):
            self._changes += 1
        for decision in effects.decisions:
            for observer in self.observers.decision:
                observer(decision)
        for cancel in effects.cancels:
            await self.execution.on_cancel(cancel)
        for issued in effects.intents:
            product_id = issued.order.product_id
            mid = self.market.mid_at(product_id, self.clock.now())
            if mid is not None:
                self._to_venue(product_id, mid)
            await self.execution.on_place(issued.order, self.clock.now_ns())
            await self.execution.drain()  # driven until quiet before the clock moves on
        await self._route_reports()
        self._schedule_timer()

    async def _route_reports(self) -> None:
        while self.reports.pending:
            event: Payload = self.reports.pending.popleft()
            self._changes += 1
            now = self.clock.now()
            if isinstance(event, OrderFilled):
                for observer in self.observers.fill:
                    observer(event)
                fill = AppliedFill(event.trade_id, event.intent_id, event.product_id,
                                   event.side, event.price, event.size, event.fee)  # fmt: skip
                await self._apply(self.risk.on_fill(fill, now))
            elif isinstance(event, IntentFinished):
                self.exit_reasons.pop(event.intent_id, None)  # its fills came before its end
                await self._apply(self.risk.on_intent_finished(event, now))


def _quiet(effects: Effects) -> bool:
    """Nothing decided, issued, cancelled or changed in the trading state: a tick that only
    marked and watched equity."""
    return not (effects.decisions or effects.intents or effects.cancels or effects.audit
                or effects.finished or effects.jobs or effects.state)  # fmt: skip


class _Bucket:
    """Base candles aggregated into one coarser granularity, as Coinbase buckets them."""

    def __init__(self, granularity_s: int) -> None:
        self.granularity_s = granularity_s
        self._parts: list[Candle] = []

    def add(self, candle: Candle, base_s: int) -> list[Candle]:
        """The buckets this candle closes: an unfinished one it leaves behind (a gap in the
        data), and its own once the candle reaches the bucket's end."""
        start = candle.start - candle.start % self.granularity_s
        closed = []
        first = self._parts[0].start if self._parts else start
        if first - first % self.granularity_s != start:
            closed.append(_merge(self._parts, self.granularity_s))
            self._parts = []
        self._parts.append(candle)
        if candle.start + base_s >= start + self.granularity_s:
            closed.append(_merge(self._parts, self.granularity_s))
            self._parts = []
        return closed


def _merge(parts: list[Candle], granularity_s: int) -> Candle:
    start = parts[0].start - parts[0].start % granularity_s
    return Candle(
        start=start, low=min(c.low for c in parts), high=max(c.high for c in parts),
        open=parts[0].open, close=parts[-1].close,
        volume=sum((c.volume for c in parts), Decimal(0)),
    )  # fmt: skip


def _granularities(strategies: Sequence[Strategy]) -> dict[str, dict[int, _Bucket]]:
    routes: dict[str, dict[int, _Bucket]] = {}
    for strategy in strategies:
        for product_id in strategy.products:
            buckets = routes.setdefault(product_id, {})
            buckets.setdefault(strategy.granularity_s, _Bucket(strategy.granularity_s))
    return routes


# moment, kind, stream, product, candle (None: a print), its granularity, the quote or close
Event = tuple[datetime, int, int, str, Candle | None, int, Waypoint]


def _events(index: int, history: ProductHistory) -> Iterator[Event]:
    """The candle's path quotes, then its close; a close waits for the next candle's
    opening quote at the same moment, so every stream is in (time, kind) order."""
    product_id, span = history.product_id, history.granularity_s
    pending: Event | None = None
    for candle in history.candles:
        for point in waypoints(candle, span):
            if pending is not None and point.time > pending[0]:
                yield pending
                pending = None
            yield point.time, _QUOTE, index, product_id, candle, span, point
        end = candle_time(candle.start + span)
        pending = (end, _CLOSE, index, product_id, candle, span, Waypoint(end, candle.close))
    if pending is not None:
        yield pending


def _print_events(
    index: int, trades: ProductTrades, granularities: Sequence[int]
) -> Iterator[Event]:
    """Each print a quote at its time, and the candles market-data's builder makes of them
    at ``granularities``, each closing at its end once a print at or after the end (or the
    end of the data) shows it complete; an empty bucket makes no candle, as market-data
    publishes none. A close waits for every print at its moment, so the stream is in
    (time, kind) order; at one moment the closes go in ``granularities``' order."""
    product_id = trades.product_id
    builder = CandleBuilder([product_id], granularities, close_delay_s=0)
    routes = [(product_id, granularity) for granularity in granularities]
    pending: list[Event] = []  # closes at the last print's moment, after its quotes
    boundary: datetime | None = None  # the earliest end of a bucket still open
    moment: datetime | None = None
    for number, trade in enumerate(trades.prints, 1):
        moment = trade.time
        if pending and pending[0][0] < moment:
            yield from pending
            pending = []
        if boundary is None:
            for route in routes:
                builder.start_at(route, bucket_start(moment, route[1]))
            boundary = _boundary(builder, routes)
        elif moment >= boundary:
            for event in _closes(index, builder, routes, moment):
                if event[0] < moment:
                    yield event
                else:
                    pending.append(event)
            boundary = _boundary(builder, routes)
        builder.on_trades([Trade(
            trade_id=trade.trade_id or str(number), product_id=product_id, price=trade.price,
            size=trade.size, side=trade.side or Side.BUY,  # the builder reads neither side
            time=moment,
        )])  # fmt: skip
        yield moment, _QUOTE, index, product_id, None, 0, Waypoint(moment, trade.price)
    yield from pending
    if moment is not None:
        horizon = moment + timedelta(seconds=max(granularities))  # past every open bucket
        yield from _closes(index, builder, routes, horizon)


def _boundary(builder: CandleBuilder, routes: Sequence[Route]) -> datetime:
    """The end of the first bucket still open, of any granularity."""
    return min(candle_time((builder.cursor(route) or 0) + route[1]) for route in routes)


def _closes(
    index: int, builder: CandleBuilder, routes: Sequence[Route], progress: datetime
) -> list[Event]:
    """The candles of the buckets ending at or before ``progress``, by end."""
    closes = []
    for order, route in enumerate(routes):
        for bucket in builder.closed(route, progress):
            builder.advance(route, bucket.start)
            if bucket.candle is not None:
                end = candle_time(bucket.start + route[1])
                closes.append((end, order, bucket.candle, route))
    closes.sort(key=lambda close: close[:2])
    return [(end, _CLOSE, index, product_id, candle, granularity, Waypoint(end, candle.close))
            for end, _, candle, (product_id, granularity) in closes]  # fmt: skip


def _merged(
    streams: list[Iterator[Event]],
) -> Iterator[tuple[datetime, int, str, Candle | None, int, Waypoint]]:
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda e: e[:3])
    for moment, kind, _index, product_id, candle, span, point in merged:
        yield moment, kind, product_id, candle, span, point
