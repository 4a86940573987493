"""The risk engine: the policy, the portfolio and the operator's commands in one place.

Every method takes the time it acts at and returns :class:`Effects`, what the shell must
make durable (Postgres) and then publish (Redis). Nothing here does I/O, so the same
engine runs in the service, in the backtest and under property tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from services.risk.flatten import FlattenJob, ProductProgress
from services.risk.ledger import DAY, EntryRecord, EntryWindows, OpenIntent, OpenIntents
from services.risk.policy import Book, ProductRules, Verdict, decide_entry, decide_exit, exit_size
from services.risk.portfolio import AppliedFill, Portfolio
from services.risk.state import EquityWatch, TradingState
from shared.config.models import RiskPolicy
from shared.messages import (
    CancelOrders,
    DecisionOutcome,
    IntentFinished,
    IntentKind,
    LiquidityPreference,
    PlaceOrder,
    ProposalAction,
    ProposalDecided,
    TradeProposed,
    TradingStateChanged,
)
from shared.money import Side

__all__ = ["Conflict", "Effects", "IssuedIntent", "RiskEngine", "liquidity_for", "stamp"]

# What a flatten cancels: everything but its own exits, which a second flatten (or a
# restart) must not cancel while they work.
FLATTEN_CANCELS = (IntentKind.ENTRY, IntentKind.EXIT)
STOP_RETRY = timedelta(seconds=5)


class Conflict(Exception):
    """The command cannot be carried out in the current state; the message says why."""


@dataclass(frozen=True)
class IssuedIntent:
    """An order intent with what risk must remember of it across a restart."""

    order: PlaceOrder
    flatten_id: str | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass
class Effects:
    decisions: list[ProposalDecided] = field(default_factory=list)
    intents: list[IssuedIntent] = field(default_factory=list)
    cancels: list[CancelOrders] = field(default_factory=list)
    audit: list[TradingStateChanged] = field(default_factory=list)
    finished: list[IntentFinished] = field(default_factory=list)
    jobs: dict[str, FlattenJob] = field(default_factory=dict)
    state: TradingState | None = None
    watch: EquityWatch | None = None

    def merge(self, other: Effects) -> Effects:
        self.decisions += other.decisions
        self.intents += other.intents
        self.cancels += other.cancels
        self.audit += other.audit
        self.finished += other.finished
        self.jobs.update(other.jobs)
        self.state = other.state or self.state
        self.watch = other.watch or self.watch
        return self

    def durable(self) -> bool:
        """Whether anything here must reach Postgres."""
        return bool(
            self.decisions or self.intents or self.audit or self.finished or self.jobs
            or self.state or self.watch
        )  # fmt: skip


class RiskEngine:
    def __init__(
        self,
        policy: RiskPolicy,
        capital: Decimal,
        *,
        rules: Mapping[str, ProductRules] | None = None,
        state: TradingState | None = None,
        watch: EquityWatch | None = None,
        max_proposal_age: timedelta | None = None,
        max_tick_age: timedelta | None = None,
    ) -> None:
        retention = max(DAY, timedelta(seconds=policy.open_trades_lookback_s))
        self.book = Book(
            policy=policy,
            portfolio=Portfolio(capital),
            intents=OpenIntents(),
            windows=EntryWindows(retention),
            state=state or TradingState(),
            watch=watch or EquityWatch(),
            rules=dict(rules or {}),
            max_proposal_age=max_proposal_age,
        )
        self.jobs: dict[str, FlattenJob] = {}
        self.levels: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._last_stop_at: dict[str, datetime] = {}
        self.max_tick_age = max_tick_age
        self.decisions_made = {outcome: 0 for outcome in DecisionOutcome}

    # --- what the engine is told -------------------------------------------------------

    def set_rules(self, rules: Mapping[str, ProductRules]) -> None:
        self.book.rules = dict(rules)

    def restore(
        self,
        *,
        fills: Iterable[AppliedFill],
        intents: Iterable[OpenIntent],
        entries: Iterable[EntryRecord],
        levels: Mapping[str, tuple[Decimal | None, Decimal | None]],
        jobs: Iterable[FlattenJob],
    ) -> None:
        """Load what Postgres remembers: fills, open intents, recent entries, flatten jobs."""
        self.book.portfolio.apply_all(fills)
        for intent in intents:
            self.book.intents.add(intent)
        self.book.windows.load(entries)
        self.levels.update(levels)
        self.jobs = {job.flatten_id: job for job in jobs if not job.done}
        self._sync_flattening()

    def on_proposal(self, proposal: TradeProposed, now: datetime) -> Effects:
        """Decide ``proposal``; the shell makes sure each proposal id is decided only once."""
        self.book.windows.prune(now)
        if proposal.action is ProposalAction.ENTRY:
            verdict = decide_entry(proposal, self.book, now)
        else:
            verdict = decide_exit(proposal, self.book)
        self.decisions_made[verdict.outcome] += 1
        effects = Effects(decisions=[_decision(proposal, verdict, now)])
        if verdict.outcome is DecisionOutcome.REJECTED:
            return effects
        if proposal.action is ProposalAction.ENTRY:
            effects.intents.append(self._entry(proposal, verdict.approved_quote, now))
        else:
            assert verdict.exit_base is not None
            order = _exit_order(
                proposal.proposal_id, IntentKind.EXIT, proposal.product_id, verdict.exit_base,
                proposal.reference_mid, now, proposal.proposal_id,
            )  # fmt: skip
            effects.intents.append(self._issue(IssuedIntent(order), now))
            effects.cancels.append(_cancel_entries(proposal.product_id, "exit", now))
        return effects

    def on_fill(self, fill: AppliedFill, now: datetime) -> Effects:
        if not self.book.portfolio.apply(fill):
            return Effects()
        self.book.intents.filled(fill.intent_id, fill.price * fill.size)
        return self.supervise(now)

    def on_intent_finished(self, report: IntentFinished, now: datetime) -> Effects:
        intent = self.book.intents.finish(report.intent_id)
        if intent is None:
            return Effects()
        effects = Effects(finished=[report])
        for job in self._active_jobs():
            progress = job.products.get(intent.product_id)
            if progress is not None:
                progress.last_result = f"{report.status.value} {report.reason}".strip()
                effects.jobs[job.flatten_id] = job
        return effects.merge(self.supervise(now))

    def on_tick(
        self, product_id: str, bid: Decimal, ask: Decimal, now: datetime,
        quoted_at: datetime | None = None,
    ) -> Effects:  # fmt: skip
        """Mark to market, fire stop-loss and take-profit exits, watch the loss limits.

        A quote older than ``max_tick_age`` (a backlog after downtime) only marks: the
        price is history, no ground to fire a stop on or to move the equity marks.
        """
        self.book.portfolio.mark(product_id, (bid + ask) / 2)
        if self.max_tick_age is not None and quoted_at is not None:
            if now - quoted_at > self.max_tick_age:
                return Effects()
        effects = Effects()
        trigger = self._exit_trigger(product_id, bid)
        last = self._last_stop_at.get(product_id)
        if trigger is not None and (last is None or now - last >= STOP_RETRY):
            size = exit_size(self.book, product_id)
            assert size is not None
            intent_id = f"{trigger}:{product_id}:{stamp(now)}"
            order = _exit_order(intent_id, IntentKind.EXIT, product_id, size, (bid + ask) / 2, now)
            effects.intents.append(self._issue(IssuedIntent(order), now))
            effects.cancels.append(_cancel_entries(product_id, trigger, now))
            self._last_stop_at[product_id] = now  # a refused exit is not retried every tick
        return effects.merge(self.watch_equity(now))

    def watch_equity(self, now: datetime) -> Effects:
        """Update the high-water mark and today's opening equity; pause on a breach.

        Nothing is read until every open position has a mark from the market: a position
        valued at its last fill price (just after a start) would set false marks.
        """
        portfolio = self.book.portfolio
        if any(p.base != 0 and product not in portfolio.marks
               for product, p in portfolio.positions.items()):  # fmt: skip
            return Effects()
        equity = portfolio.equity()
        effects = Effects()
        if self.book.watch.observe(equity, now):
            effects.watch = self.book.watch
        breach = self.limit_breach(equity)
        if breach and self.book.state.entries_allowed:
            effects.merge(self.pause("risk", breach, now))
        return effects

    def limit_breach(self, equity: Decimal | None = None) -> str:
        """Why entries must stay paused on the loss limits, or "" when they need not;
        ``equity`` is the marked-to-market equity when the caller has just read it."""
        policy, watch = self.book.policy, self.book.watch
        equity = self.book.portfolio.equity() if equity is None else equity
        day_loss, drawdown = watch.day_loss_pct(equity), watch.drawdown_pct(equity)
        if day_loss >= policy.daily_loss_limit_pct:
            limit = policy.daily_loss_limit_pct
            return f"daily_loss_limit: down {day_loss:.2f}% today, limit {limit}%"
        if drawdown >= policy.max_drawdown_pct:
            limit = policy.max_drawdown_pct
            return f"max_drawdown: {drawdown:.2f}% below the high-water mark, limit {limit}%"
        return ""

    # --- the operator's commands -------------------------------------------------------

    def pause(self, actor: str, reason: str, now: datetime) -> Effects:
        """No new entries; open entry orders are cancelled; exits keep working."""
        state = self.book.state
        self.book.state = TradingState(False, reason, actor, now, state.flatten_id)
        cancel = CancelOrders(command_id=f"pause:{stamp(now)}", kinds=(IntentKind.ENTRY,),
                              reason=f"paused: {reason}", issued_at=now)  # fmt: skip
        return Effects(
            cancels=[cancel], audit=[self._audit("PAUSE", actor, reason, now)],
            state=self.book.state,
        )  # fmt: skip

    def resume(
        self, actor: str, reason: str, now: datetime, *, reset_peak: bool = False
    ) -> Effects:
        if self._active_jobs():
            raise Conflict("a flatten is in progress; resume once it is done")
        watch = self.book.watch
        previous_peak = watch.peak
        if reset_peak:
            watch.peak = self.book.portfolio.equity()
        breach = self.limit_breach()
        if breach:
            watch.peak = previous_peak
            hint = "" if breach.startswith("daily") else "; resume with reset_high_water_mark"
            raise Conflict(f"{breach}{hint}")
        self.book.state = TradingState(True, reason, actor, now)
        return Effects(
            audit=[self._audit("RESUME", actor, reason, now)], state=self.book.state,
            watch=watch if reset_peak else None,
        )  # fmt: skip

    def flatten(
        self, flatten_id: str, products: Iterable[str] | None, actor: str, reason: str,
        now: datetime,
    ) -> tuple[FlattenJob, Effects]:  # fmt: skip
        """Pause, cancel open orders, sell every position in scope; extends a running job."""
        scope = sorted(set(products) if products is not None else self._open_products())
        job = next(iter(self._active_jobs()), None)
        if job is None:
            job = FlattenJob(flatten_id, actor, reason, now)
            self.jobs[job.flatten_id] = job
        for product_id in scope:
            job.products.setdefault(product_id, ProductProgress())
        self._sync_flattening()
        self.book.state = TradingState(False, f"flatten: {reason}", actor, now, job.flatten_id)
        cancel = CancelOrders(
            command_id=f"flatten:{job.flatten_id}:{stamp(now)}",
            product_ids=tuple(scope) if products is not None else (), kinds=FLATTEN_CANCELS,
            reason=f"flatten: {reason}", issued_at=now,
        )  # fmt: skip
        effects = Effects(
            cancels=[cancel], audit=[self._audit("FLATTEN", actor, reason, now, job.flatten_id)],
            state=self.book.state, jobs={job.flatten_id: job},
        )  # fmt: skip
        for product_id in scope:
            effects.intents += self._flatten_exit(job, product_id, now, first=True)
        return job, effects.merge(self.supervise(now))

    def supervise(self, now: datetime) -> Effects:
        """Move every flatten job on: retry products not yet flat, finish jobs that are."""
        effects = Effects()
        for job in self._active_jobs():
            for product_id in job.products:
                effects.intents += self._flatten_exit(job, product_id, now, first=False)
                intents = self.book.intents.for_product(product_id)
                exiting = any(i.flatten_id == job.flatten_id for i in intents)
                flat = exit_size(self.book, product_id) is None
                if job.settle(product_id, flat=flat, busy=bool(intents), exiting=exiting):
                    effects.jobs[job.flatten_id] = job
            if job.finish_if_flat(now):
                effects.jobs[job.flatten_id] = job
        if self.book.state.flatten_id is not None and not self._active_jobs():
            state = self.book.state
            self.book.state = TradingState(False, f"flattened ({state.reason})", state.actor, now)
            effects.state = self.book.state
        self._sync_flattening()
        return effects

    # --- helpers -----------------------------------------------------------------------

    def _entry(self, proposal: TradeProposed, quote: Decimal, now: datetime) -> IssuedIntent:
        order = PlaceOrder(
            intent_id=proposal.proposal_id, kind=IntentKind.ENTRY,
            product_id=proposal.product_id, side=Side.BUY, quote_size=quote,
            reference_mid=proposal.reference_mid, liquidity=liquidity_for(IntentKind.ENTRY),
            proposal_id=proposal.proposal_id, issued_at=now,
        )  # fmt: skip
        self.book.windows.record(EntryRecord(now, proposal.product_id, quote))
        self.levels[proposal.product_id] = (proposal.stop_loss, proposal.take_profit)
        issued = IssuedIntent(order, stop_loss=proposal.stop_loss, take_profit=proposal.take_profit)
        return self._issue(issued, now)

    def _issue(self, issued: IssuedIntent, now: datetime) -> IssuedIntent:
        order = issued.order
        self.book.intents.add(
            OpenIntent(
                order.intent_id,
                order.kind,
                order.product_id,
                order.side,
                order.quote_size
                if order.kind is IntentKind.ENTRY and order.quote_size
                else Decimal(0),
                now,
                issued.flatten_id,
            )  # fmt: skip
        )
        return issued

    def _flatten_exit(
        self, job: FlattenJob, product_id: str, now: datetime, *, first: bool
    ) -> list[IssuedIntent]:
        size = exit_size(self.book, product_id)
        busy = bool(self.book.intents.for_product(product_id))
        if size is None or (busy and not first) or not job.due(product_id, now):
            return []
        if first and self.book.intents.exit_in_flight(product_id):
            # A sell is already working (ours, or an exit the flatten is cancelling):
            # another one now could sell the position twice. Retry once it finishes.
            return []
        mid = self.book.portfolio.marks.get(product_id) or self._last_price(product_id)
        order = _exit_order(
            job.intent_id(product_id), IntentKind.FLATTEN, product_id, size, mid, now
        )
        job.exit_sent(product_id, now)
        return [self._issue(IssuedIntent(order, flatten_id=job.flatten_id), now)]

    def _last_price(self, product_id: str) -> Decimal:
        position = self.book.portfolio.positions[product_id]
        assert position.last_fill_price is not None
        return position.last_fill_price

    def exit_levels(self, product_id: str) -> tuple[Decimal, Decimal] | None:
        """The bid at or below which the position is stopped out, and at or above which it
        takes profit; None when no exit can fire now (flat, flattening, exit working)."""
        book = self.book
        if product_id in book.flattening or book.intents.exit_in_flight(product_id):
            return None
        if exit_size(book, product_id) is None:
            return None
        average = book.portfolio.positions[product_id].average_cost
        if average is None or average <= 0:
            return None
        strategy_stop, strategy_take = self.levels.get(product_id, (None, None))
        stop = average * (1 - book.policy.stop_loss_pct / 100)
        take = average * (1 + book.policy.take_profit_pct / 100)
        if strategy_stop is not None:
            stop = max(stop, strategy_stop)
        if strategy_take is not None:
            take = min(take, strategy_take)
        return stop, take

    def _exit_trigger(self, product_id: str, bid: Decimal) -> str | None:
        levels = self.exit_levels(product_id)
        if levels is None:
            return None
        stop, take = levels
        if bid <= stop:
            return "stop_loss"
        if bid >= take:
            return "take_profit"
        return None

    def _open_products(self) -> set[str]:
        held = set(self.book.portfolio.held(self.book.policy.dust_threshold_usd))
        return held | {i.product_id for i in self.book.intents.by_id.values()}

    def _active_jobs(self) -> list[FlattenJob]:
        return [job for job in self.jobs.values() if not job.done]

    def _sync_flattening(self) -> None:
        self.book.flattening = frozenset(
            product for job in self._active_jobs() for product in job.products
        )

    def _audit(
        self, action: str, actor: str, reason: str, now: datetime, flatten_id: str | None = None
    ) -> TradingStateChanged:
        return TradingStateChanged(
            action=action, actor=actor, reason=reason,
            entries_allowed=self.book.state.entries_allowed, flatten_id=flatten_id, changed_at=now,
        )  # fmt: skip


def _decision(proposal: TradeProposed, verdict: Verdict, now: datetime) -> ProposalDecided:
    return ProposalDecided(
        proposal_id=proposal.proposal_id, product_id=proposal.product_id,
        strategy=proposal.strategy, action=proposal.action, outcome=verdict.outcome,
        requested_quote_size=proposal.quote_size, approved_quote_size=verdict.approved_quote,
        exit_base_size=verdict.exit_base, reasons=verdict.reasons, decided_at=now,
    )  # fmt: skip


def _exit_order(
    intent_id: str, kind: IntentKind, product_id: str, base: Decimal, mid: Decimal,
    now: datetime, proposal_id: str | None = None,
) -> PlaceOrder:  # fmt: skip
    return PlaceOrder(
        intent_id=intent_id, kind=kind, product_id=product_id, side=Side.SELL, base_size=base,
        reference_mid=mid, liquidity=liquidity_for(kind), proposal_id=proposal_id,
        issued_at=now,
    )  # fmt: skip


def _cancel_entries(product_id: str, why: str, now: datetime) -> CancelOrders:
    """An exit stops the product's working entries: nothing buys back what it sells."""
    return CancelOrders(
        command_id=f"{why}:{product_id}:{stamp(now)}", product_ids=(product_id,),
        kinds=(IntentKind.ENTRY,), reason=f"{why} on {product_id}", issued_at=now,
    )  # fmt: skip


def liquidity_for(kind: IntentKind) -> LiquidityPreference:
    """Entries try to earn the maker fee; exits and flattens must get done: taker."""
    return (
        LiquidityPreference.MAKER_FIRST if kind is IntentKind.ENTRY else LiquidityPreference.TAKER
    )


def stamp(now: datetime) -> str:
    """``now`` in whole microseconds, for command and intent ids."""
    return str(int(now.timestamp() * 1_000_000))
