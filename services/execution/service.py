"""Execution's shell: commands in, the order state machines driven, reports out.

Each intent has its own lock, so one slow venue call holds up only its own intent. For
every step of an intent, in this order:

1. Postgres: orders about to be sent (PENDING), fills, order states, the intent's end.
2. ``exec.reports``: the step's ``OrderFilled``, ``OrderUpdated`` and ``IntentFinished``
   in one MULTI, with ids derived from what they report, so a replay after a crash
   repeats ids the consumers have already seen.
3. The venue: the step's orders, cancels and lookups; its answers make the next step.

A new intent's handler returns once the intent and its first step are in Postgres:
driving it (reporting, sending, what the venue answers) goes on in a task of its own that
holds the intent's lock, so the next command is not held up by this one's venue call, and
a cancel of it waits for it. :meth:`ExecutionService.drain` waits for those tasks.

Venue reports for another intent than the one being driven (the paper venue settles
every order that has arrived, not just the one it was given) wait in an inbox for the
timer loop, which also polls the venue and fires the state machines' TTLs.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from prometheus_client import Counter, Gauge, Histogram

from services.execution.orders import IntentExecution, Step, client_order_id
from services.execution.reports import IntentStore, ReportSink
from services.execution.store import Progress, StoredIntent
from services.execution.venues import (
    Venue,
    VenueAccepted,
    VenueDone,
    VenueFill,
    VenueLookup,
    VenueReport,
    WorkingOrder,
)
from shared.clock import Clock
from shared.config.models import AppConfig
from shared.logging import get_logger
from shared.matching.types import OrderRequest, ProductRules
from shared.messages import (
    CancelOrders,
    IntentFinished,
    IntentKind,
    Liquidity,
    LiquidityPreference,
    OrderFilled,
    OrderStatus,
    OrderUpdated,
    Payload,
    PlaceOrder,
    TickUpdated,
    TradingMode,
)
from shared.money import Side
from shared.products import ProductInfo
from shared.slippage import CostModel

__all__ = ["ExecutionService", "entry_refusal"]

_log = get_logger("execution")
INTENTS = Counter("execution_intents_total", "Intents taken on, by kind.", ["kind"])
FINISHED = Counter("execution_intents_finished_total", "Intents finished.", ["status", "reason"])
ORDERS_SENT = Counter("execution_orders_sent_total", "Orders sent to the venue.", ["role"])
FILLS = Counter("execution_fills_total", "Fills recorded.", ["liquidity"])
RESYNCS = Counter(
    "execution_intent_resyncs_total",
    "Intents rebuilt from Postgres and the venue after their driving failed part way.",
)
OPEN_INTENTS = Gauge("execution_open_intents", "Intents not yet finished.")
BEHIND = Gauge(
    "execution_intents_behind_record",
    "Intents whose memory is ahead of their record (a write or report failed), to be rebuilt.",
)
SLIPPAGE_BUCKETS = (-100, -50, -20, -10, -5, 0, 5, 10, 20, 50, 100, 200, 500)
SLIPPAGE = Histogram(
    "execution_slippage_bps",
    "Fill price against the arrival mid, in bps; positive is worse for us.",
    ["tier", "liquidity"],
    buckets=SLIPPAGE_BUCKETS,
)
# Observed against modeled is per taker order: a walk through several levels is one
# order, whose average price the model prices at the order's whole notional. The model
# never gives back: its buckets are the observed ones from zero up, so medians of the two
# compare bucket for bucket (and, with no bucket below zero, it has a _sum).
TAKER_ORDER_SLIPPAGE = Histogram(
    "execution_taker_order_slippage_bps",
    "Each taker order's average fill price against the arrival mid, in bps; positive is "
    "worse for us.",
    ["tier"],
    buckets=SLIPPAGE_BUCKETS,
)
MODELED_SLIPPAGE = Histogram(
    "execution_modeled_slippage_bps",
    "What the cost model expects each taker order to pay against the mid, at its filled "
    "notional, in bps.",
    ["tier"],
    buckets=tuple(bound for bound in SLIPPAGE_BUCKETS if bound >= 0),
)
ORDER_LATENCY = Histogram(
    "execution_order_latency_seconds",
    "From the market-data event that started the chain (origin_ts) to the intent's first "
    "order going to the venue.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RETAINED_FINISHED = 500  # finished intents kept in memory, for reports that arrive late


def entry_refusal(command: PlaceOrder, info: ProductInfo | None) -> str:
    """Why the venue's product state forbids this order now, or ``""``."""
    if info is None:
        return "product_unknown"
    if not info.listed:
        return "product_delisted"
    if info.trading_disabled:
        return "trading_disabled"
    if info.cancel_only:
        return "cancel_only"
    if command.kind is IntentKind.ENTRY and not info.entries_allowed:
        return f"product_{info.status or 'unavailable'}".lower()
    return ""


class RecordBehind(Exception):
    """An intent's memory is ahead of its record and could not be rebuilt yet."""


class ExecutionService:
    def __init__(
        self, *, config: AppConfig, venue: Venue, store: IntentStore, reports: ReportSink,
        clock: Clock, mode: TradingMode, products: dict[str, ProductInfo],
        quote_max_age_s: float = 10.0, costs: CostModel | None = None,
    ) -> None:  # fmt: skip
        """``costs``: the model each taker fill's slippage is set against (config's tiers
        unless given)."""
        self.config = config
        self.venue = venue
        self.products = products
        self._store = store
        self._reports = reports
        self._clock = clock
        self.mode = mode
        self._quote_max_age = timedelta(seconds=quote_max_age_s)
        self.intents: OrderedDict[str, IntentExecution] = OrderedDict()
        self._live: dict[str, IntentExecution] = {}  # the unfinished among them
        self._origin: dict[str, int] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._families: dict[str, str] = {}  # client order id family -> intent id
        self._trades: defaultdict[str, set[str]] = defaultdict(set)  # intent -> trade ids applied
        self._quotes: dict[str, tuple[Decimal, Decimal, datetime]] = {}
        self._inbox: list[VenueReport] = []
        self._tiers = {p.product_id: str(int(p.tier)) for p in config.universe.products}
        self._costs = costs or CostModel.from_config(config.universe, config.policy.execution)
        self._modeled_tiers = {str(tier) for tier in self._costs.tiers}
        # (intent, order) -> taker size and cost so far; observed when the intent ends
        self._taker_orders: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        self._driving: set[asyncio.Task[None]] = set()
        # intents whose driving failed part way: memory may be ahead of the record
        self._unsynced: set[str] = set()
        self.restored = asyncio.Event()

    @property
    def costs(self) -> CostModel:
        return self._costs

    def set_costs(self, costs: CostModel) -> None:
        """The model taker orders are set against (the latest calibration, read at start)."""
        self._costs = costs
        self._modeled_tiers = {str(tier) for tier in costs.tiers}

    def set_products(self, products: dict[str, ProductInfo]) -> None:
        """The venue's latest word on each product (market-data's catalog)."""
        self.products = dict(products)

    # --- start --------------------------------------------------------------------------

    async def restore(self) -> None:
        """Pick up what a previous run left: report what it could not, resume the rest,
        and reconcile their orders with the venue before any new command is taken."""
        now = self._clock.now()
        for stored in await self._store.unreported():
            await self._recover(stored, now)
        reports = await self.venue.reconcile(self._working(), now)
        await self._dispatch(reports, now)
        OPEN_INTENTS.set(len(self._open()))
        self.restored.set()
        _log.info("execution restored", open_intents=len(self._open()))

    async def _recover(self, stored: StoredIntent, now: datetime) -> IntentExecution:
        """An intent's memory rebuilt from its record alone: its orders as recorded, the
        fills recorded (reported again: their ids are stable, and consumers drop a repeat),
        and its end, if that report was cut off. The venue's word on its orders is next."""
        machine = self._resume(stored, now)
        intent_id = stored.command.intent_id
        fills = await self._store.fills_of(intent_id)
        self._trades[intent_id] = {fill.trade_id for fill in fills}
        events: list[Payload] = [*fills]
        if stored.finished is not None:
            machine.finished = self._closing(machine, stored.finished)
            events.append(machine.finished)
        await self._publish(self._origin[intent_id], events)
        if stored.finished is not None:
            await self._store.mark_reported(intent_id)
        return machine

    async def _resync(self) -> None:
        """Rebuild the intents whose driving failed part way (Postgres or Redis out, say):
        what memory held beyond the record (fills applied but not stored, or stored but
        not reported) is dropped, and the record and the venue's word on the intent's
        orders are taken again, as a restart would. Raises while the record cannot be
        read; the intents stay to be rebuilt."""
        if not self._unsynced:
            return
        now = self._clock.now()
        ids = sorted(self._unsynced)
        stored = {s.command.intent_id: s for s in await self._store.unreported(ids)}
        for intent_id in ids:
            lock = self._locks[intent_id]
            if lock.locked():
                continue  # still being driven; the next round rebuilds it
            async with lock:
                try:
                    await self._rebuild(intent_id, stored.get(intent_id), now)
                except Exception as exc:  # one intent's trouble holds up no other
                    _log.warning(
                        "rebuilding an intent failed; the next round tries again",
                        intent_id=intent_id, error=f"{type(exc).__name__}: {exc}",
                    )  # fmt: skip

    def _caught_up(self, intent_id: str) -> None:
        self._unsynced.discard(intent_id)
        BEHIND.set(len(self._unsynced))

    async def _rebuild(self, intent_id: str, record: StoredIntent | None, now: datetime) -> None:
        self._inbox = [r for r in self._inbox if self._intent_of(r.client_order_id) != intent_id]
        if record is None:  # reported finished: nothing of it was lost
            self._caught_up(intent_id)
            return
        machine = await self._recover(record, now)
        recorded = len(self._trades[intent_id])
        reports = await self.venue.reconcile(self._working([machine]), now)
        step, fills = self._apply(machine, reports, now)
        self._caught_up(intent_id)  # a failure from here marks it again
        RESYNCS.inc()
        _log.info("intent rebuilt from its record and the venue", intent_id=intent_id,
                  fills_recorded=recorded, fills_found=len(fills))  # fmt: skip
        await self._drive(machine, step, fills)

    def _resume(self, stored: StoredIntent, now: datetime) -> IntentExecution:
        command = stored.command
        info = self.products.get(command.product_id)
        rules = info.rules() if info else _fallback_rules(command.product_id)
        machine = IntentExecution.resume(
            command, rules, self.config.policy.execution, self.mode,
            started_at=stored.started_at, orders=stored.orders,
            cancel_reason=stored.cancel_reason, now=now,
        )  # fmt: skip
        self._register(machine, stored.origin_ts)
        return machine

    def _closing(
        self, machine: IntentExecution, ending: tuple[OrderStatus, str, datetime]
    ) -> IntentFinished:
        """The report of an intent a crash finished but did not report."""
        intent = machine.intent
        status, reason, finished_at = ending
        return IntentFinished(
            intent_id=intent.intent_id, kind=intent.kind, product_id=intent.product_id,
            side=intent.side, status=status, filled_base=machine.filled_base,
            filled_quote=machine.filled_quote, reason=reason, mode=self.mode,
            finished_at=finished_at,
        )  # fmt: skip

    # --- commands -----------------------------------------------------------------------

    async def on_place(self, command: PlaceOrder, origin_ts: int) -> None:
        """Take an intent on once: record it with its first order; reporting and sending
        that go on in the background (:meth:`drain`)."""
        if command.intent_id in self.intents:
            return
        now = self._clock.now()
        info = self.products.get(command.product_id)
        refusal = entry_refusal(command, info)
        if refusal or info is None:
            await self._refuse(command, refusal, origin_ts, now)
            return
        machine = IntentExecution(
            command, info.rules(), self.config.policy.execution, self.mode, now
        )
        bid, ask = self._quote(command, now)
        step = machine.start(bid, ask, now)
        lock = self._locks[command.intent_id]
        await lock.acquire()
        try:
            first = self._progress(machine, step, [])
            if not await self._store.add_intent(command, origin_ts, now, first):
                _log.info("intent already taken on", intent_id=command.intent_id)
                lock.release()
                del self._locks[command.intent_id]  # nobody else knows of it: not kept
                return
        except BaseException:
            lock.release()
            raise
        INTENTS.labels(command.kind.value).inc()
        self._register(machine, origin_ts)
        self._drive_in_background(lock, machine, step, recorded=True)

    async def on_cancel(self, command: CancelOrders) -> None:
        """Cancel the working intents of these kinds and products. A cancel acts on
        intents as recorded: one that cannot be rebuilt yet fails the handler, and the
        cancel is retried from the stream."""
        await self._resync()
        targets = [
            machine.intent.intent_id for machine in self._open()
            if machine.intent.kind in command.kinds
            and (not command.product_ids or machine.intent.product_id in command.product_ids)
        ]  # fmt: skip
        behind = [intent_id for intent_id in targets if intent_id in self._unsynced]
        if behind:
            raise RecordBehind(f"intents not yet rebuilt from their record: {behind}")
        for intent_id in targets:
            # in the handler, not in the background: a cancel whose step failed is retried
            async with self._locks[intent_id]:
                machine = self.intents.get(intent_id)  # a rebuild may have replaced it
                if machine is None or machine.finished is not None:
                    continue
                step = machine.cancel(command.reason, self._clock.now())
                await self._drive(machine, step, [])

    def _drive_in_background(
        self, lock: asyncio.Lock, machine: IntentExecution, step: Step, *, recorded: bool
    ) -> None:
        """Drive ``step`` in a task that holds ``lock`` (already acquired) until it is done.

        A failure leaves the intent as Postgres has it, as a failed handler did before
        (a redelivered command finds the intent taken on): the next timer round rebuilds
        it from there (:meth:`_resync`)."""

        async def drive() -> None:
            try:
                await self._drive(machine, step, [], recorded=recorded)
            except Exception as exc:
                _log.warning("driving an intent failed; the next timer round rebuilds it",
                             intent_id=machine.intent.intent_id,
                             error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            finally:
                lock.release()

        task = asyncio.create_task(drive(), name=f"drive-{machine.intent.intent_id}")
        self._driving.add(task)
        task.add_done_callback(self._driving.discard)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every intent being driven has done its step; after ``timeout_s``,
        cancel the rest, as if the process died there (the next start reconciles them)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while self._driving:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            _done, late = await asyncio.wait(set(self._driving), timeout=left)
            if late:  # the time is up
                for task in late:
                    _log.warning("intent still being driven at shutdown; cancelled",
                                 task=task.get_name())  # fmt: skip
                    task.cancel()
                await asyncio.wait(late, timeout=5)
                return

    async def _refuse(
        self, command: PlaceOrder, reason: str, origin_ts: int, now: datetime
    ) -> None:
        finished = IntentFinished(
            intent_id=command.intent_id, kind=command.kind, product_id=command.product_id,
            side=command.side, status=OrderStatus.REJECTED, filled_base=Decimal(0),
            filled_quote=Decimal(0), reason=reason, mode=self.mode, finished_at=now,
        )  # fmt: skip
        if not await self._store.add_intent(command, origin_ts, now, Progress(finished=finished)):
            return
        await self._publish(origin_ts, [finished])
        await self._store.mark_reported(command.intent_id)
        FINISHED.labels(finished.status.value, reason).inc()
        _log.info("intent refused", intent_id=command.intent_id, reason=reason)

    # --- market and timers --------------------------------------------------------------

    def on_tick(self, tick: TickUpdated) -> None:
        """Remember the best bid and ask: where maker orders go."""
        self.on_quote(tick.product_id, tick.best_bid, tick.best_ask)

    def on_quote(self, product_id: str, best_bid: Decimal, best_ask: Decimal) -> None:
        self._quotes[product_id] = (best_bid, best_ask, self._clock.now())
        for machine in self._open():
            if machine.intent.product_id == product_id:
                machine.update_quote(best_bid, best_ask)

    def open_intents(self) -> list[IntentExecution]:
        """Intents not yet finished, oldest first."""
        return self._open()

    async def on_timer(self) -> None:
        """Poll the venue, hand out its reports, and fire every intent's TTLs."""
        await self._resync()
        now = self._clock.now()
        reports, self._inbox = self._inbox, []
        reports += await self.venue.poll(self._working(), now)
        await self._dispatch(reports, now, busy_wait=False)
        for machine in self._open():
            lock = self._locks[machine.intent.intent_id]
            if lock.locked() or machine.intent.intent_id in self._unsynced:
                continue  # a venue call of its own is under way; its timers fire next round
            async with lock:
                step = machine.on_timer(self._clock.now())
                if step.commands or step.events:
                    await self._drive(machine, step, [])
        OPEN_INTENTS.set(len(self._open()))

    # --- driving one intent -------------------------------------------------------------

    async def _dispatch(
        self, reports: Sequence[VenueReport], now: datetime, *, busy_wait: bool = True
    ) -> None:
        """Hand reports to their intents; without ``busy_wait``, an intent busy with a venue
        call gets its reports next round instead of holding up the others."""
        by_intent: defaultdict[str, list[VenueReport]] = defaultdict(list)
        for report in reports:
            intent_id = self._intent_of(report.client_order_id)
            if intent_id is None:
                _log.warning("venue report for an unknown order",
                             client_order_id=report.client_order_id)  # fmt: skip
                continue
            by_intent[intent_id].append(report)
        for intent_id, mine in by_intent.items():
            if intent_id in self._unsynced:
                continue  # its rebuild reads the venue again
            machine = self.intents[intent_id]
            if not busy_wait and self._locks[intent_id].locked():
                self._inbox += mine
                continue
            async with self._locks[intent_id]:
                step, fills = self._apply(machine, mine, now)
                await self._drive(machine, step, fills)

    def _progress(self, machine: IntentExecution, step: Step, fills: list[OrderFilled]) -> Progress:
        finished = any(isinstance(event, IntentFinished) for event in step.events)
        return Progress(
            sent=[c for c in step.commands if isinstance(c, OrderRequest)],
            updates=[e for e in step.events if isinstance(e, OrderUpdated)],
            fills=fills, finished=machine.finished if finished else None,
            cancel_reason=machine.cancel_reason,
        )  # fmt: skip

    async def _drive(
        self, machine: IntentExecution, step: Step, fills: list[OrderFilled],
        *, recorded: bool = False,
    ) -> None:  # fmt: skip
        """Record, report, send; then the same for what the venue answered, until quiet.

        ``recorded``: the first step is already in Postgres (written with the intent).
        A failure part way leaves memory ahead of the record: the intent is marked to be
        rebuilt (:meth:`_resync`)."""
        try:
            await self._drive_steps(machine, step, fills, recorded=recorded)
        except BaseException:
            self._unsynced.add(machine.intent.intent_id)
            BEHIND.set(len(self._unsynced))
            raise

    async def _drive_steps(
        self, machine: IntentExecution, step: Step, fills: list[OrderFilled], *, recorded: bool
    ) -> None:
        intent = machine.intent
        while True:
            was_finished = any(isinstance(e, IntentFinished) for e in step.events)
            if recorded:
                new_fills, recorded = list(fills), False
            else:
                progress = self._progress(machine, step, fills)
                new_fills = await self._store.save(intent, progress, intent.issued_at)
            self._observe(new_fills)
            await self._publish(self._origin[intent.intent_id], [*new_fills, *step.events])
            if was_finished and machine.finished is not None:
                self._observe_taker_orders(intent)
                await self._store.mark_reported(intent.intent_id)
                FINISHED.labels(machine.finished.status.value, machine.finished.reason).inc()
                self._forget_old()
            if not step.commands:
                return
            reports: list[VenueReport] = []
            for command in step.commands:
                if isinstance(command, OrderRequest):
                    ORDERS_SENT.labels("MAKER" if command.post_only else "TAKER").inc()
                    if command.client_order_id == client_order_id(intent.intent_id, 0):
                        self._observe_latency(intent.intent_id, intent.kind)
                reports += await self.venue.send(command, self._clock.now())
            mine = [r for r in reports if self._intent_of(r.client_order_id) == intent.intent_id]
            self._inbox += [r for r in reports
                            if self._intent_of(r.client_order_id) != intent.intent_id]  # fmt: skip
            step, fills = self._apply(machine, mine, self._clock.now())

    def _apply(
        self, machine: IntentExecution, reports: Iterable[VenueReport], now: datetime
    ) -> tuple[Step, list[OrderFilled]]:
        """Feed venue reports to one intent's state machine."""
        step, fills = Step(), []
        applied = self._trades[machine.intent.intent_id]
        for report in reports:
            coid = report.client_order_id
            if isinstance(report, VenueAccepted):
                more = machine.on_accepted(coid, report.venue_order_id, now)
            elif isinstance(report, VenueFill):
                if report.trade_id in applied:
                    continue
                applied.add(report.trade_id)
                fills.append(self._filled(machine, report))
                more = machine.on_fill(coid, report.price, report.size, report.fee, now)
            elif isinstance(report, VenueDone):
                more = machine.on_done(coid, report.status, report.reason, now)
            elif isinstance(report, VenueLookup):
                more = machine.on_lookup(coid, report.found, now)
            step.commands += more.commands
            step.events += more.events
        return step, fills

    def _filled(self, machine: IntentExecution, fill: VenueFill) -> OrderFilled:
        intent = machine.intent
        return OrderFilled(
            client_order_id=fill.client_order_id, intent_id=intent.intent_id,
            trade_id=fill.trade_id, product_id=intent.product_id, side=intent.side,
            price=fill.price, size=fill.size, fee=fill.fee, liquidity=fill.liquidity,
            arrival_mid=intent.reference_mid, mode=self.mode, filled_at=fill.time,
        )  # fmt: skip

    def _observe(self, fills: Iterable[OrderFilled]) -> None:
        for fill in fills:
            FILLS.labels(fill.liquidity.value).inc()
            tier = self._tiers.get(fill.product_id, "unknown")
            SLIPPAGE.labels(tier, fill.liquidity.value).observe(
                float(_worse_bps(fill.side, fill.price, fill.arrival_mid))
            )
            if fill.liquidity is Liquidity.TAKER:
                key = (fill.intent_id, fill.client_order_id)
                size, cost = self._taker_orders.get(key, (Decimal(0), Decimal(0)))
                self._taker_orders[key] = (size + fill.size, cost + fill.price * fill.size)

    def _observe_taker_orders(self, intent: PlaceOrder) -> None:
        """The intent's taker orders, each as one: its average price against the arrival
        mid, and what the model expects at its whole notional."""
        tier = self._tiers.get(intent.product_id, "unknown")
        for key in [key for key in self._taker_orders if key[0] == intent.intent_id]:
            size, cost = self._taker_orders.pop(key)
            average = cost / size
            TAKER_ORDER_SLIPPAGE.labels(tier).observe(
                float(_worse_bps(intent.side, average, intent.reference_mid))
            )
            if tier in self._modeled_tiers:
                modeled = self._costs.slippage_bps(int(tier), size * intent.reference_mid)
                MODELED_SLIPPAGE.labels(tier).observe(float(modeled))

    def _observe_latency(self, intent_id: str, kind: IntentKind) -> None:
        """Market data to order: origin_ts is another host's clock, so never below zero."""
        elapsed_ns = self._clock.now_ns() - self._origin[intent_id]
        ORDER_LATENCY.labels(kind.value).observe(max(0, elapsed_ns) / 1_000_000_000)

    async def _publish(self, origin_ts: int, events: Sequence[Payload]) -> None:
        if events:
            await self._reports.publish(origin_ts, events)

    # --- bookkeeping --------------------------------------------------------------------

    def _register(self, machine: IntentExecution, origin_ts: int) -> None:
        intent_id = machine.intent.intent_id
        self.intents[intent_id] = machine
        if machine.finished is None:
            self._live[intent_id] = machine
        self._origin[intent_id] = origin_ts
        self._families[_order_family(client_order_id(intent_id, 0))] = intent_id
        quote = self._quotes.get(machine.intent.product_id)
        if quote is not None:
            machine.update_quote(quote[0], quote[1])

    def _intent_of(self, coid: str) -> str | None:
        return self._families.get(_order_family(coid))

    def _forget_old(self) -> None:
        finished = [i for i, m in self.intents.items() if m.finished is not None]
        for intent_id in finished[: max(0, len(finished) - RETAINED_FINISHED)]:
            del self.intents[intent_id]
            self._families.pop(_order_family(client_order_id(intent_id, 0)), None)
            self._origin.pop(intent_id, None)
            self._locks.pop(intent_id, None)
            self._trades.pop(intent_id, None)

    def _open(self) -> list[IntentExecution]:
        for intent_id in [i for i, machine in self._live.items() if machine.finished is not None]:
            del self._live[intent_id]
        return list(self._live.values())

    def _working(self, machines: Iterable[IntentExecution] | None = None) -> list[WorkingOrder]:
        """The orders at the venue not yet ended, of ``machines`` (every intent's if None)."""
        working = []
        for machine in self.intents.values() if machines is None else machines:
            for order in machine.orders:
                if order.status in (OrderStatus.PENDING, OrderStatus.OPEN,
                                    OrderStatus.PARTIALLY_FILLED):  # fmt: skip
                    working.append(WorkingOrder(
                        order.request.client_order_id, order.request.product_id,
                        order.venue_order_id, order.sent_at, order.filled_base,
                    ))  # fmt: skip
        return working

    def _quote(self, command: PlaceOrder, now: datetime) -> tuple[Decimal, Decimal]:
        """The fresh best bid and ask; without one, the intent's reference mid (a post-only
        there that would cross is refused by the venue and goes taker)."""
        quote = self._quotes.get(command.product_id)
        if quote is not None and now - quote[2] <= self._quote_max_age:
            return quote[0], quote[1]
        if command.liquidity is LiquidityPreference.MAKER_FIRST:
            _log.info("no fresh quote; the maker order goes at the reference mid",
                      intent_id=command.intent_id)  # fmt: skip
        return command.reference_mid, command.reference_mid


def _order_family(coid: str) -> str:
    """The part of a client order id all of one intent's orders share."""
    return coid.rsplit("-", 1)[0]


def _fallback_rules(product_id: str) -> ProductRules:
    """Rules for resuming an intent whose product the catalog no longer lists."""
    tiny, big = Decimal("0.00000001"), Decimal(10**12)
    return ProductRules(product_id, tiny, Decimal("0.01"), Decimal("0.01"), tiny, big,
                        Decimal("0.01"), big)  # fmt: skip


def _worse_bps(side: Side, price: Decimal, mid: Decimal) -> Decimal:
    """How much worse than ``mid`` a fill at ``price`` is for us, in bps."""
    worse = price - mid if side is Side.BUY else mid - price
    return worse / mid * 10_000
