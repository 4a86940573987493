"""Invariants of the risk engine over generated sequences of proposals, fills and ticks.

The test keeps its own account of what it fed the engine (fills, open intents, marks,
approved entries, the equity marks) and checks every decision against it: exposure within
the asset and theme caps, entries within the sliding counts and budgets, open trades
within their limit, exits judged only on what is held, and no sell beyond the position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from services.risk.engine import Conflict, Effects, RiskEngine
from services.risk.policy import ProductRules
from services.risk.portfolio import AppliedFill, Portfolio
from shared.config.models import RiskPolicy
from shared.messages import (
    DecisionOutcome,
    IntentFinished,
    IntentKind,
    OrderStatus,
    ProposalAction,
    TradeProposed,
    TradingMode,
)
from shared.money import Rounding, Side, quantize
from tests.unit.risk_helpers import NOW, D

THEME = {"BTC-USD": "majors", "ETH-USD": "majors", "SOL-USD": "alts", "DOGE-USD": "alts"}
LISTED = tuple(THEME)
UNLISTED = "XRP-USD"
PRICE = {"BTC-USD": D(100), "ETH-USD": D(20), "SOL-USD": D(5), "DOGE-USD": D("0.5")}
QUOTE_INCREMENT = {
    "BTC-USD": D("0.01"), "ETH-USD": D("0.01"), "SOL-USD": D("0.1"), "DOGE-USD": D("0.25"),
}  # fmt: skip
BASE_INCREMENT = {
    "BTC-USD": D("0.00001"), "ETH-USD": D("0.0001"), "SOL-USD": D("0.01"), "DOGE-USD": D(1),
}  # fmt: skip
EXIT_REASONS = {"unsupported_side", "flatten_in_progress", "nothing_held", "dust", "exit_in_flight"}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)
STEPS = [
    MICROSECOND, timedelta(seconds=1), timedelta(seconds=59), timedelta(seconds=60),
    timedelta(seconds=300) - MICROSECOND, timedelta(seconds=300), HOUR - MICROSECOND, HOUR,
    DAY - MICROSECOND, DAY,
]  # fmt: skip
FINAL = [*[OrderStatus.FILLED] * 3, OrderStatus.CANCELLED, OrderStatus.REJECTED,
         OrderStatus.EXPIRED]  # fmt: skip

percent = st.integers(50, 150)  # a price as % of the product's reference price
moves = st.integers(-30, 20)  # a tick's move from the last price, in %: prices walk
products = st.sampled_from(LISTED)
# requests from a few dollars to a good part of equity; some off the quote increment
dollars = st.sampled_from([1000, 500, 2000, 250, 3000, 100, 50, 10, 5])
requests = st.builds(
    lambda whole, mills: D(whole) + D(mills) / 1000,
    dollars,
    st.one_of(st.integers(0, 99).map(lambda cents: cents * 10), st.integers(0, 999)),
)
any_product = st.sampled_from((*LISTED, *LISTED, UNLISTED))  # mostly listed
fractions = st.sampled_from([D(1), D(1), D("0.5"), D("0.3333"), D("0.9")])


@dataclass
class Intent:
    """An order intent as the test saw it issued, and what it has filled since."""

    kind: IntentKind
    product_id: str
    quote: Decimal  # entries
    base: Decimal  # exits
    filled_quote: Decimal = D(0)
    filled_base: Decimal = D(0)


def price_at(product_id: str, pct: int) -> Decimal:
    return PRICE[product_id] * pct / 100


def walk(product_id: str, last: Decimal, move: int) -> Decimal:
    """``last`` moved by ``move`` %, on a 1/10000 grid of the reference, within 10x of it."""
    reference = PRICE[product_id]
    moved = floor(last * (100 + move) / 100, reference / 10_000)
    return min(max(moved, reference / 10), reference * 10)


def floor(value: Decimal, increment: Decimal) -> Decimal:
    return quantize(value, increment, Rounding.FLOOR)


class RiskMachine(RuleBasedStateMachine):
    # --- set-up --------------------------------------------------------------------------

    @initialize(
        capital=st.integers(5_000, 20_000),
        # roomy first: the simplest examples should approve a lot
        per_hour=st.sampled_from([6, 4, 3, 2, 1]),
        per_day=st.sampled_from([12, 8, 4, 2, 1]),
        open_trades=st.sampled_from([4, 3, 2, 1]),
        hourly=st.sampled_from([50, 100, 20, 10, 5]),  # % of capital
        daily=st.sampled_from([2, 4, 1]),  # x the hourly budget
        cooldown=st.sampled_from([0, 60, 300]),
        # BTC's own cap, the default cap, the two theme caps
        caps=st.tuples(
            st.sampled_from([30, 20, 10, 5]),
            st.sampled_from([25, 15, 5]),
            st.sampled_from([40, 30, 15]),
            st.sampled_from([30, 20, 10]),
        ),
        # daily loss, drawdown, stop-loss, take-profit (%)
        limits=st.tuples(
            st.integers(1, 5), st.integers(2, 12), st.integers(2, 15), st.integers(2, 30)
        ),
    )
    def start(
        self, capital: int, per_hour: int, per_day: int, open_trades: int, hourly: int,
        daily: int, cooldown: int, caps: tuple[int, int, int, int],
        limits: tuple[int, int, int, int],
    ) -> None:  # fmt: skip
        btc_cap, default_cap, majors_cap, alts_cap = caps
        daily_loss, drawdown, stop, take = limits
        self.policy = RiskPolicy(
            theme_caps_pct={"majors": D(majors_cap), "alts": D(alts_cap)},
            asset_caps_pct={"BTC-USD": D(btc_cap)}, default_asset_cap_pct=D(default_cap),
            stop_loss_pct=D(stop), take_profit_pct=D(take), max_open_trades=open_trades,
            max_trades_per_hour=per_hour, max_trades_per_day=per_day,
            hourly_budget_usd=D(capital * hourly / 100),
            daily_budget_usd=D(capital * hourly * daily / 100),
            new_trade_cooldown_s=cooldown, dust_threshold_usd=D(1), min_trade_usd=D(10),
            daily_loss_limit_pct=D(daily_loss), max_drawdown_pct=D(drawdown),
        )  # fmt: skip
        rules = {
            p: ProductRules(p, THEME[p], True, True, True, QUOTE_INCREMENT[p], BASE_INCREMENT[p])
            for p in LISTED
        }
        self.capital = D(capital)
        self.engine = RiskEngine(self.policy, self.capital, rules=rules)
        self.now = NOW
        self.ids = count(1)
        # what the test knows, independently of the engine
        self.cash = D(0)
        self.base = {p: D(0) for p in (*LISTED, UNLISTED)}
        self.last_fill: dict[str, Decimal] = {}
        self.marks: dict[str, Decimal] = {}
        self.intents: dict[str, Intent] = {}
        self.approved: list[tuple[datetime, str, Decimal]] = []
        self.peak: Decimal | None = None
        self.day: date | None = None
        self.day_start: Decimal | None = None
        self.last_fill_sent: AppliedFill | None = None
        self.levels: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self.last_stop: dict[str, datetime] = {}

    # --- the test's own account ----------------------------------------------------------

    def mark(self, product_id: str) -> Decimal | None:
        return self.marks.get(product_id, self.last_fill.get(product_id))

    def value(self, product_id: str) -> Decimal:
        mark = self.mark(product_id)
        return D(0) if mark is None else self.base[product_id] * mark

    def equity(self) -> Decimal:
        return self.capital + self.cash + sum((self.value(p) for p in self.base), D(0))

    def reserved(self, product_id: str) -> Decimal:
        return sum(
            (max(D(0), i.quote - i.filled_quote) for i in self.intents.values()
             if i.kind is IntentKind.ENTRY and i.product_id == product_id),
            D(0),
        )  # fmt: skip

    def exposure(self, product_id: str) -> Decimal:
        return max(D(0), self.value(product_id)) + self.reserved(product_id)

    def open_trades(self) -> set[str]:
        held = {p for p in self.base if self.base[p] > 0 and self.value(p) >= 1}
        entries = {i.product_id for i in self.intents.values() if i.kind is IntentKind.ENTRY}
        return held | entries

    def selling(self, product_id: str) -> Decimal:
        """Base that sells in flight on the product may still sell."""
        return sum(
            (i.base - i.filled_base for i in self.intents.values()
             if i.kind is not IntentKind.ENTRY and i.product_id == product_id),
            D(0),
        )  # fmt: skip

    def sells_in_flight(self, product_id: str) -> bool:
        return any(
            i.kind is not IntentKind.ENTRY and i.product_id == product_id
            for i in self.intents.values()
        )

    def day_loss_hit(self) -> bool:
        start, equity = self.day_start, self.equity()
        return (
            start is not None
            and start > 0
            and ((start - equity) * 100 >= self.policy.daily_loss_limit_pct * start)
        )

    def drawdown_hit(self) -> bool:
        peak, equity = self.peak, self.equity()
        return (
            peak is not None
            and peak > 0
            and ((peak - equity) * 100 >= self.policy.max_drawdown_pct * peak)
        )

    def breached(self) -> bool:
        return self.day_loss_hit() or self.drawdown_hit()

    def window(self, length: timedelta) -> list[Decimal]:
        return [q for at, _, q in self.approved if self.now - length < at <= self.now]

    def entry_gates(self, product_id: str) -> set[str]:
        """The reasons an entry on ``product_id`` must be rejected for, before sizing."""
        state, gates = self.engine.book.state, self.counter_gates(product_id)
        if state.flatten_id is not None:
            gates.add("flatten_in_progress")
        elif not state.entries_allowed:
            gates.add("trading_paused")
        if self.day_loss_hit():
            gates.add("daily_loss_limit")
        if self.drawdown_hit():
            gates.add("max_drawdown")
        if self.equity() <= 0:
            gates.add("no_equity")
        if product_id not in THEME:
            gates.add("product_not_in_universe")
        return gates

    def counter_gates(self, product_id: str) -> set[str]:
        policy, gates = self.policy, set()
        if len(self.window(HOUR)) >= policy.max_trades_per_hour:
            gates.add("max_trades_per_hour")
        if len(self.window(DAY)) >= policy.max_trades_per_day:
            gates.add("max_trades_per_day")
        open_trades = self.open_trades()
        if product_id not in open_trades and len(open_trades) >= policy.max_open_trades:
            gates.add("max_open_trades")
        last = max((at for at, p, _ in self.approved if p == product_id), default=None)
        if last is not None and self.now - last < timedelta(seconds=policy.new_trade_cooldown_s):
            gates.add("cooldown")
        return gates

    def expected_entry(self, product_id: str, quote: Decimal) -> tuple[Decimal, set[str]]:
        """What a gate-free entry is sized to, and the limits that bound it."""
        policy, equity, theme = self.policy, self.equity(), THEME[product_id]
        theme_exposure = sum((self.exposure(p) for p in LISTED if THEME[p] == theme), D(0))
        rooms = {
            "asset_cap": (policy.asset_cap_pct(product_id) * equity
                          - self.exposure(product_id) * 100) / 100,
            "theme_cap": (policy.theme_caps_pct[theme] * equity - theme_exposure * 100) / 100,
            "hourly_budget": policy.hourly_budget_usd - sum(self.window(HOUR), D(0)),
            "daily_budget": policy.daily_budget_usd - sum(self.window(DAY), D(0)),
        }  # fmt: skip
        fitted = min(quote, *rooms.values())
        approved = floor(fitted, QUOTE_INCREMENT[product_id]) if fitted > 0 else D(0)
        binding = {reason for reason, room in rooms.items() if room < quote}
        if approved < quote and not binding:
            binding = {"quote_increment"}
        return approved, binding

    def expected_trigger(self, product_id: str, bid: Decimal) -> str | None:
        """Whether a tick at ``bid`` must fire a stop-loss or take-profit exit."""
        base = self.base[product_id]
        if (
            product_id in self.engine.book.flattening or self.sells_in_flight(product_id)
            or base <= 0 or self.value(product_id) < 1
            or floor(base, BASE_INCREMENT[product_id]) <= 0
        ):  # fmt: skip
            return None
        average = self.engine.book.portfolio.positions[product_id].average_cost
        assert average is not None and average > 0
        stop = average * (1 - self.policy.stop_loss_pct / 100)
        take = average * (1 + self.policy.take_profit_pct / 100)
        strategy_stop, strategy_take = self.levels.get(product_id, (None, None))
        stop = stop if strategy_stop is None else max(stop, strategy_stop)
        take = take if strategy_take is None else min(take, strategy_take)
        if bid <= stop:
            return "stop_loss"
        return "take_profit" if bid >= take else None

    def absorb(self, effects: Effects) -> None:
        """Take note of every intent the engine issued; sells never exceed what is held."""
        for issued in effects.intents:
            order = issued.order
            assert order.intent_id not in self.intents
            if order.kind is IntentKind.ENTRY:
                assert order.quote_size is not None and order.side is Side.BUY
                self.intents[order.intent_id] = Intent(order.kind, order.product_id,
                                                       order.quote_size, D(0))  # fmt: skip
                continue
            product_id = order.product_id
            assert order.side is Side.SELL and order.base_size is not None
            assert order.base_size == floor(self.base[product_id], BASE_INCREMENT[product_id])
            assert self.value(product_id) >= 1, "dust is never sold"
            assert self.selling(product_id) + order.base_size <= self.base[product_id]
            if order.kind is IntentKind.FLATTEN:
                assert product_id in self.engine.book.flattening
            self.intents[order.intent_id] = Intent(order.kind, product_id, D(0), order.base_size)

    # --- proposals -----------------------------------------------------------------------

    @rule(
        product_id=any_product,
        quote=requests,
        levels=st.one_of(st.none(), st.tuples(st.integers(85, 99), st.integers(101, 120))),
    )
    def propose_entry(
        self, product_id: str, quote: Decimal, levels: tuple[int, int] | None
    ) -> None:
        reference = self.mark(product_id) or PRICE.get(product_id, D(1))
        stop, take = (None, None) if levels is None else (
            reference * levels[0] / 100, reference * levels[1] / 100
        )  # fmt: skip
        proposal = TradeProposed(
            proposal_id=f"p-{next(self.ids)}", strategy="s", product_id=product_id,
            side=Side.BUY, action=ProposalAction.ENTRY, quote_size=quote,
            reference_mid=reference, stop_loss=stop, take_profit=take, decided_at=self.now,
        )  # fmt: skip
        equity = self.equity()
        exposure = self.exposure(product_id)
        theme = THEME.get(product_id)
        theme_exposure = sum((self.exposure(p) for p in LISTED if THEME[p] == theme), D(0))
        open_before = self.open_trades()
        state = self.engine.book.state
        running = state.entries_allowed and state.flatten_id is None
        breached = self.breached()
        gates = self.entry_gates(product_id)
        expected, binding = self.expected_entry(product_id, quote) if not gates else (D(0), set())

        effects = self.engine.on_proposal(proposal, self.now)

        [decision] = effects.decisions
        event(f"entry {decision.outcome.value} {' '.join(sorted(decision.reasons))}")
        if gates:
            assert decision.outcome is DecisionOutcome.REJECTED
            assert set(decision.reasons) == gates
        elif expected < self.policy.min_trade_usd:
            assert decision.outcome is DecisionOutcome.REJECTED
            assert set(decision.reasons) == binding | {"below_min_trade"}
        else:
            assert decision.approved_quote_size == expected
            assert set(decision.reasons) == binding
        if decision.outcome is DecisionOutcome.REJECTED:
            assert decision.approved_quote_size == 0 and decision.reasons
            assert effects.intents == []
            return
        approved = decision.approved_quote_size
        assert running and not breached and product_id in LISTED
        assert 0 < approved <= quote
        assert floor(approved, QUOTE_INCREMENT[product_id]) == approved
        assert approved >= self.policy.min_trade_usd
        assert (decision.outcome is DecisionOutcome.RESIZED) == (approved < quote)
        assert (exposure + approved) * 100 <= self.policy.asset_cap_pct(product_id) * equity
        assert theme is not None
        assert (theme_exposure + approved) * 100 <= self.policy.theme_caps_pct[theme] * equity
        assert len(open_before | {product_id}) <= self.policy.max_open_trades
        for earlier, other, _ in self.approved:
            if other == product_id:
                assert self.now - earlier >= timedelta(seconds=self.policy.new_trade_cooldown_s)
        self.approved.append((self.now, product_id, approved))
        self.levels[product_id] = (stop, take)
        for length, most, budget in (
            (HOUR, self.policy.max_trades_per_hour, self.policy.hourly_budget_usd),
            (DAY, self.policy.max_trades_per_day, self.policy.daily_budget_usd),
        ):
            window = [q for at, _, q in self.approved if self.now - length < at <= self.now]
            assert len(window) <= most
            assert sum(window, D(0)) <= budget
        [issued] = effects.intents
        assert issued.order.kind is IntentKind.ENTRY and issued.order.quote_size == approved
        self.absorb(effects)

    @rule(
        choice=st.integers(0, 9),
        product_id=any_product,
        buy=st.sampled_from([False, False, False, True]),
    )
    def propose_exit(self, choice: int, product_id: str, buy: bool) -> None:
        held = sorted(p for p, base in self.base.items() if base > 0)
        if held and choice < 4:  # often what is held, so exits get approved too
            product_id = held[choice % len(held)]
        proposal = TradeProposed(
            proposal_id=f"x-{next(self.ids)}", strategy="s", product_id=product_id,
            side=Side.BUY if buy else Side.SELL, action=ProposalAction.EXIT,
            quote_size=D(50), reference_mid=self.mark(product_id) or D(1),
            decided_at=self.now,
        )  # fmt: skip
        base = self.base[product_id]
        increment = BASE_INCREMENT.get(product_id)
        sellable = base if increment is None or base <= 0 else floor(base, increment)
        if buy:
            expected = "unsupported_side"
        elif product_id in self.engine.book.flattening:
            expected = "flatten_in_progress"
        elif base <= 0:
            expected = "nothing_held"
        elif self.value(product_id) < 1 or sellable <= 0:
            expected = "dust"
        elif self.sells_in_flight(product_id):
            expected = "exit_in_flight"
        else:
            expected = ""

        effects = self.engine.on_proposal(proposal, self.now)

        [decision] = effects.decisions
        event(f"exit {decision.outcome.value} {' '.join(decision.reasons)}")
        assert set(decision.reasons) <= EXIT_REASONS
        if expected:
            assert decision.outcome is DecisionOutcome.REJECTED
            assert decision.reasons == (expected,)
        else:  # whatever the entry limits, the trading state and the loss limits say
            assert decision.outcome is DecisionOutcome.APPROVED, decision.reasons
            assert decision.exit_base_size == sellable
        self.absorb(effects)

    # --- execution reports ---------------------------------------------------------------

    def pick(self, index: int) -> tuple[str, Intent]:
        intent_id = sorted(self.intents)[index % len(self.intents)]
        return intent_id, self.intents[intent_id]

    @precondition(lambda self: self.intents)
    @rule(index=st.integers(0, 50), fraction=fractions, slippage=st.integers(-3, 3),
          fee_bps=st.sampled_from([0, 60, 120]))  # fmt: skip
    def fill(self, index: int, fraction: Decimal, slippage: int, fee_bps: int) -> None:
        intent_id, _ = self.pick(index)
        self.fill_intent(intent_id, fraction, slippage, fee_bps)

    def fill_intent(self, intent_id: str, fraction: Decimal, slippage: int, fee_bps: int) -> None:
        intent = self.intents[intent_id]
        product_id = intent.product_id
        price = walk(product_id, self.mark(product_id) or PRICE[product_id], slippage)
        if intent.kind is IntentKind.ENTRY:
            side = Side.BUY
            size = floor((intent.quote - intent.filled_quote) * fraction / price,
                         BASE_INCREMENT[product_id])  # fmt: skip
        else:
            side = Side.SELL
            size = floor((intent.base - intent.filled_base) * fraction,
                         BASE_INCREMENT[product_id])  # fmt: skip
        if size <= 0:
            return
        notional = price * size
        fee = floor(notional * fee_bps / 10_000, D("0.00000001"))
        applied = AppliedFill(f"t-{next(self.ids)}", intent_id, product_id, side, price, size,
                              fee)  # fmt: skip
        intent.filled_quote += notional
        intent.filled_base += size
        self.base[product_id] += size if side is Side.BUY else -size
        self.cash += (notional if side is Side.SELL else -notional) - fee
        self.last_fill[product_id] = price
        self.last_fill_sent = applied
        self.absorb(self.engine.on_fill(applied, self.now))

    @precondition(lambda self: self.last_fill_sent is not None)
    @rule()
    def redeliver_a_fill(self) -> None:
        assert self.last_fill_sent is not None
        effects = self.engine.on_fill(self.last_fill_sent, self.now)
        assert not effects.durable()

    @precondition(lambda self: self.intents)
    @rule(index=st.integers(0, 50), status=st.sampled_from(FINAL))
    def finish(self, index: int, status: OrderStatus) -> None:
        intent_id, intent = self.pick(index)
        if status is OrderStatus.FILLED:  # whatever was left fills first
            self.fill_intent(intent_id, D(1), 0, 60)
        del self.intents[intent_id]
        report = IntentFinished(
            intent_id=intent_id, kind=intent.kind, product_id=intent.product_id,
            side=Side.BUY if intent.kind is IntentKind.ENTRY else Side.SELL, status=status,
            filled_base=intent.filled_base, filled_quote=intent.filled_quote,
            mode=TradingMode.PAPER, finished_at=self.now,
        )  # fmt: skip
        effects = self.engine.on_intent_finished(report, self.now)
        assert effects.finished == [report]
        self.absorb(effects)

    # --- the market and the clock --------------------------------------------------------

    @rule(choice=st.integers(0, 9), product_id=products, move=moves, spread=st.integers(0, 5))
    def tick(self, choice: int, product_id: str, move: int, spread: int) -> None:
        held = sorted(p for p in LISTED if self.base[p] > 0)
        if held and choice < 6:  # mostly what is held, so its stops and the limits matter
            product_id = held[choice % len(held)]
        bid = walk(product_id, self.marks.get(product_id, PRICE[product_id]), move)
        ask = bid + PRICE[product_id] * spread / 1000
        self.marks[product_id] = (bid + ask) / 2
        # equity is read only once every open position has a market mark
        watching = all(p in self.marks for p in LISTED if self.base[p] != 0)
        equity = self.equity()
        if watching and (self.day != self.now.date() or self.day_start is None):
            self.day, self.day_start = self.now.date(), equity
        if watching and (self.peak is None or equity > self.peak):
            self.peak = equity
        was_allowed = self.engine.book.state.entries_allowed
        trigger = self.expected_trigger(product_id, bid)
        last_stop = self.last_stop.get(product_id)
        if last_stop is not None and self.now - last_stop < timedelta(seconds=5):
            trigger = None  # a stop is retried at most every 5 s
        effects = self.engine.on_tick(product_id, bid, ask, self.now)
        stop_cancels = [c for c in effects.cancels if c.command_id.startswith(f"{trigger}:")]
        if trigger is None:
            assert effects.intents == [] and stop_cancels == []
        else:
            self.last_stop[product_id] = self.now
            [issued] = effects.intents
            assert issued.order.kind is IntentKind.EXIT and issued.order.product_id == product_id
            assert issued.order.intent_id.startswith(f"{trigger}:{product_id}:")
            # the exit stops the product's working entries
            assert [(c.kinds, c.product_ids) for c in stop_cancels] == [
                ((IntentKind.ENTRY,), (product_id,))
            ]
        self.absorb(effects)
        pauses = [audit for audit in effects.audit if audit.action == "PAUSE"]
        pause_cancels = [c for c in effects.cancels if c not in stop_cancels]
        event(f"tick: {len(effects.intents)} exits, {len(pauses)} pauses")
        if watching and was_allowed and self.breached():
            assert [(a.actor, a.entries_allowed) for a in pauses] == [("risk", False)]
            assert [c.kinds for c in pause_cancels] == [(IntentKind.ENTRY,)]
            assert self.engine.book.state.entries_allowed is False
        else:
            assert pauses == [] and pause_cancels == []

    @rule(step=st.one_of(st.sampled_from(STEPS), st.integers(1, 20_000).map(
        lambda s: timedelta(seconds=s))))  # fmt: skip
    def advance(self, step: timedelta) -> None:
        self.now += step
        self.absorb(self.engine.supervise(self.now))

    # --- the operator --------------------------------------------------------------------

    @rule(action=st.sampled_from([*["resume"] * 4, "resume_reset", "pause"]))
    def operator(self, action: str) -> None:
        if action == "pause":
            effects = self.engine.pause("operator", "a look", self.now)
            assert effects.state is not None and effects.state.entries_allowed is False
            assert [c.kinds for c in effects.cancels] == [(IntentKind.ENTRY,)]
            self.absorb(effects)
            return
        reset_peak = action == "resume_reset"
        flattening = self.engine.book.state.flatten_id is not None
        peak = self.peak
        if reset_peak and not flattening:
            self.peak = self.equity()
        conflict = flattening or self.breached()
        try:
            self.engine.resume("operator", "go", self.now, reset_peak=reset_peak)
        except Conflict:
            event("resume refused")
            assert conflict
            self.peak = peak
        else:
            assert not conflict
            assert self.engine.book.state.entries_allowed

    @rule(
        everything=st.sampled_from([False, True, True, True]),
        scope=st.sets(products, min_size=1, max_size=2),
        go=st.sampled_from([False] * 11 + [True]),
    )
    def flatten(self, everything: bool, scope: set[str], go: bool) -> None:
        if not go:  # flatten is rarer than the rest
            return
        job, effects = self.engine.flatten(
            f"f-{next(self.ids)}", None if everything else scope, "operator", "out", self.now
        )
        assert all(i.order.kind is IntentKind.FLATTEN for i in effects.intents)
        assert self.engine.book.state.entries_allowed is False
        self.absorb(effects)

    # --- always --------------------------------------------------------------------------

    @invariant()
    def the_engine_agrees_with_the_test_on_positions_equity_and_intents(self) -> None:
        if not hasattr(self, "engine"):
            return
        portfolio: Portfolio = self.engine.book.portfolio
        for product_id, base in self.base.items():
            assert portfolio.base(product_id) == base
            assert base >= 0, "never sold more than was held"
        assert portfolio.equity() == self.equity()
        realized, fees = portfolio.realized_pnl(), portfolio.fees()
        identity = portfolio.capital + realized - fees + portfolio.unrealized_pnl()
        assert abs(identity - portfolio.equity()) < D("1e-12")
        assert set(self.engine.book.intents.by_id) == set(self.intents)


RiskMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,  # shrink one failure, not one per failing line
)


class TestRiskEngineInvariants(RiskMachine.TestCase):
    # A pass takes seconds; shrinking a failure down to a short story can take minutes.
    pytestmark = pytest.mark.timeout(300)


@settings(max_examples=200, deadline=None)
@given(
    fills=st.lists(
        st.tuples(
            st.sampled_from(LISTED),
            st.booleans(),
            percent,
            st.integers(1, 5_000),
            st.integers(0, 200),
        ),  # fmt: skip
        max_size=30,
    ),
    marks=st.dictionaries(st.sampled_from(LISTED), percent),
)
def test_equity_is_capital_plus_realized_minus_fees_plus_unrealized(
    fills: list[tuple[str, bool, int, int, int]], marks: dict[str, int]
) -> None:
    portfolio = Portfolio(D(10_000))
    cash, base, last = D(0), dict.fromkeys(LISTED, D(0)), {}
    for number, (product_id, buy, pct, units, fee_cents) in enumerate(fills):
        price, size, fee = price_at(product_id, pct), D(units) / 1000, D(fee_cents) / 100
        side = Side.BUY if buy else Side.SELL
        applied = AppliedFill(f"t-{number}", "i", product_id, side, price, size, fee)
        assert portfolio.apply(applied)
        assert not portfolio.apply(applied)
        base[product_id] += size if buy else -size
        cash += (-price * size if buy else price * size) - fee
        last[product_id] = price
    for product_id, pct in marks.items():
        portfolio.mark(product_id, price_at(product_id, pct))
        last[product_id] = price_at(product_id, pct)
    equity = D(10_000) + cash + sum((base[p] * last[p] for p in last), D(0))
    assert portfolio.equity() == equity
    identity = (
        portfolio.capital + portfolio.realized_pnl() - portfolio.fees()
        + portfolio.unrealized_pnl()
    )  # fmt: skip
    assert abs(identity - equity) < D("1e-12")
    assert portfolio.fees() == sum((D(f[4]) / 100 for f in fills), D(0))
