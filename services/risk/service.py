"""The shell around :class:`RiskEngine`: one gate, Postgres first, then the streams.

Every change of risk's state (a proposal decided, a fill, a tick that fires a stop, an
operator's pause or flatten) runs under one lock, and its effects are written to Postgres
and published to Redis before the lock is released. So the order of ``risk.orders`` is
the order of decisions: once a pause or flatten has been published, no entry approved
before it can appear after it, and none is approved after it.

When a write fails, the in-memory engine may hold effects that never became durable: it
is marked stale and rebuilt from Postgres before anything else is decided, and every
open intent and the cancels the trading state calls for are published again (execution
dedupes both by id).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from services.risk.engine import FLATTEN_CANCELS, Effects, RiskEngine, stamp
from services.risk.flatten import FlattenJob
from services.risk.ledger import DAY, HOUR
from services.risk.policy import Book, ProductRules, exposure, open_trades, theme_exposure
from services.risk.portfolio import AppliedFill
from services.risk.state import TradingState
from services.risk.store import AlreadyDecided, RiskStore
from shared.bus import BusKeys, Delivery, Publisher
from shared.clock import Clock
from shared.config import AppConfig
from shared.logging import get_logger
from shared.messages import (
    CancelOrders,
    Envelope,
    IntentFinished,
    IntentKind,
    OrderFilled,
    Payload,
    PlaceOrder,
    TickUpdated,
    TradeProposed,
    TradingMode,
    new_envelope,
)
from shared.products import ProductCatalog

__all__ = ["RiskService", "export_gauges", "product_rules"]

_log = get_logger("risk")
DECISIONS = Counter("risk_decisions_total", "Proposals decided.", ["action", "outcome"])
REJECTIONS = Counter("risk_rejection_reasons_total", "Reasons proposals were rejected.", ["reason"])
INTENTS = Counter("risk_intents_total", "Order intents issued.", ["kind"])
ENTRIES_ALLOWED = Gauge("risk_entries_allowed", "1 while new entries may open, 0 while paused.")
EQUITY = Gauge("risk_equity_usd", "Marked-to-market equity.")
DRAWDOWN = Gauge("risk_drawdown_pct", "Equity below its high-water mark, %.")
DAY_PNL = Gauge("risk_pnl_today_usd", "Equity change since today's (UTC) opening equity.")
EXPOSURE = Gauge("risk_exposure_pct", "Exposure as % of equity (held + reserved).", ["product"])
THEME_EXPOSURE = Gauge(
    "risk_theme_exposure_pct", "Exposure as % of equity, summed over a theme's products.",
    ["theme"],
)  # fmt: skip
REALIZED_PNL = Gauge("risk_realized_pnl_usd", "PnL of closed position parts, before fees.")
UNREALIZED_PNL = Gauge("risk_unrealized_pnl_usd", "PnL of open positions at their marks.")
FEES = Gauge("risk_fees_usd", "Fees paid on every fill so far.")
TRADING_STATES = ("RUNNING", "PAUSED", "FLATTENING")
TRADING_STATE = Gauge(
    "risk_trading_state", "1 for the current trading state (RUNNING, PAUSED, FLATTENING).",
    ["state"],
)  # fmt: skip
RECOVERIES = Counter("risk_recoveries_total", "Rebuilds of risk's state from Postgres.")


def product_rules(config: AppConfig, venue: Mapping[str, Any]) -> dict[str, ProductRules]:
    """Our universe's products with what the venue says of them (``ProductInfo`` values)."""
    rules = {}
    for product in config.universe.products:
        info = venue.get(product.product_id)
        rules[product.product_id] = ProductRules(
            product_id=product.product_id, theme=product.theme, enabled=product.enabled,
            listed_by_venue=info is not None and info.listed,
            entries_allowed=info is not None and info.entries_allowed,
            quote_increment=info.quote_increment if info else Decimal("0.01"),
            base_increment=info.base_increment if info else Decimal("0.00000001"),
            quote_min_size=info.quote_min_size if info else Decimal(0),
            quote_max_size=info.quote_max_size if info else None,
            base_min_size=info.base_min_size if info else Decimal(0),
        )  # fmt: skip
    return rules


class RiskService:
    def __init__(
        self, *, config: AppConfig, capital: Decimal, store: RiskStore, redis: Redis,
        keys: BusKeys, clock: Clock, mode: TradingMode, stream_maxlen: int = 100_000,
        tick_max_age_s: float = 10.0, proposal_max_age_s: float | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.capital = capital
        self.store = store
        self.mode = mode
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._publisher = Publisher(redis, keys=keys, maxlen=stream_maxlen)
        self._tick_max_age = timedelta(seconds=tick_max_age_s)
        self._proposal_max_age = (
            None if proposal_max_age_s is None else timedelta(seconds=proposal_max_age_s)
        )
        self._catalog = ProductCatalog(redis, keys.prefix)
        self.gate = asyncio.Lock()
        self.engine = self._new_engine()
        self.restored = False
        self._watch_dirty = False
        self.state_key = f"{keys.prefix}risk:state"

    def _new_engine(self) -> RiskEngine:
        return RiskEngine(
            self.config.policy.risk,
            self.capital,
            max_proposal_age=self._proposal_max_age,
            max_tick_age=self._tick_max_age,
        )

    # --- start and recovery ------------------------------------------------------------

    async def _restore(self) -> None:
        """Rebuild the engine from Postgres and re-publish what may not have reached Redis."""
        now = self._clock.now()
        engine = self._new_engine()
        engine.set_rules(product_rules(self.config, await self._catalog.all()))
        restored = await self.store.load(now, engine.book.windows.retention)
        if restored.state is not None:
            engine.book.state = restored.state
        if restored.watch is not None:
            engine.book.watch = restored.watch
        engine.restore(
            fills=restored.fills, intents=restored.intents, entries=restored.entries,
            levels=restored.levels, jobs=restored.jobs,
        )  # fmt: skip
        # the market's marks are not in Postgres: keep what the last engine saw
        engine.book.portfolio.marks.update(self.engine.book.portfolio.marks)
        self.engine = engine
        await self._republish(now)
        self.restored = True
        self._export_gauges()
        _log.info("risk state restored", state=engine.book.state.name, fills=len(restored.fills),
                  open_intents=len(restored.intents), flatten_jobs=len(restored.jobs))  # fmt: skip

    async def _republish(self, now: datetime) -> None:
        book = self.engine.book
        effects = Effects()
        at = stamp(now)
        if not book.state.entries_allowed:
            effects.cancels.append(CancelOrders(
                command_id=f"restore:entries:{at}", kinds=(IntentKind.ENTRY,),
                reason=f"paused: {book.state.reason}", issued_at=now,
            ))  # fmt: skip
        for job in self.engine.jobs.values():
            effects.cancels.append(CancelOrders(
                command_id=f"restore:flatten:{job.flatten_id}:{at}",
                product_ids=tuple(sorted(job.products)), kinds=FLATTEN_CANCELS,
                reason=f"flatten: {job.reason}", issued_at=now,
            ))  # fmt: skip
        # the orders go first, so the cancels the state calls for reach them
        orders = await self.store.open_orders()
        await self._publish(effects, origin_ts=None, orders=orders)

    async def _ensure_fresh(self) -> None:
        if not self.restored:
            RECOVERIES.inc()
            await self._restore()

    async def _apply(self, effects: Effects, origin_ts: int | None) -> None:
        """Make ``effects`` durable, then publish them; on failure rebuild before going on."""
        try:
            if effects.durable():
                await self.store.save(effects, self._clock.now())
            await self._publish(effects, origin_ts)
        except BaseException:
            self.restored = False
            raise
        finally:
            self._export_gauges()

    async def _publish(
        self, effects: Effects, origin_ts: int | None, orders: list[PlaceOrder] | None = None
    ) -> None:
        entries: list[tuple[str, Payload, str | None]] = []
        entries += [(d.STREAM, d, f"decision:{d.proposal_id}") for d in effects.decisions]
        entries += [(o.STREAM, o, f"order:{o.intent_id}") for o in orders or []]
        entries += [(c.STREAM, c, c.command_id) for c in effects.cancels]
        entries += [
            (i.order.STREAM, i.order, f"order:{i.order.intent_id}") for i in effects.intents
        ]
        entries += [(a.STREAM, a, None) for a in effects.audit]
        async with self._redis.pipeline(transaction=True) as pipe:
            streams = [
                self._publisher.queue(pipe, new_envelope(
                    payload, self._clock, origin_ts=origin_ts, message_id=message_id
                ), stream=stream)
                for stream, payload, message_id in entries
            ]  # fmt: skip
            pipe.set(self.state_key, json.dumps(self.engine.book.state.to_json()))
            await pipe.execute()
        Publisher.count(streams)
        self._count(effects)

    def _count(self, effects: Effects) -> None:
        for decision in effects.decisions:
            DECISIONS.labels(decision.action.value, decision.outcome.value).inc()
            if decision.approved_quote_size == 0:
                for reason in decision.reasons:
                    REJECTIONS.labels(reason).inc()
            _log.info("decision", proposal_id=decision.proposal_id,
                      outcome=decision.outcome.value, reasons=list(decision.reasons),
                      approved_quote_size=str(decision.approved_quote_size))  # fmt: skip
        for issued in effects.intents:
            INTENTS.labels(issued.order.kind.value).inc()
        for change in effects.audit:
            _log.warning("trading state changed", action=change.action, actor=change.actor,
                         reason=change.reason)  # fmt: skip

    def _export_gauges(self) -> None:
        export_gauges(self.engine.book)

    # --- stream handlers ---------------------------------------------------------------

    async def on_proposal(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        proposal = envelope.data
        if not isinstance(proposal, TradeProposed):
            return
        async with self.gate:
            await self._ensure_fresh()
            if delivery.attempt > 1:
                # Handled before, perhaps decided: a crash or a failed publish after the
                # commit. The rebuild those leave behind has published every open order
                # again; only the decision is left to repeat, without deciding again.
                decided = await self.store.decision(proposal.proposal_id)
                if decided is not None:
                    await self._publish(Effects(decisions=[decided]), envelope.origin_ts)
                    return
            effects = self.engine.on_proposal(proposal, self._clock.now())
            try:
                await self._apply(effects, envelope.origin_ts)
            except AlreadyDecided:
                # Decided before a crash. The engine took it again in memory only: rebuild
                # it (which publishes every open intent's order again; execution dedupes
                # them), and publish what was decided then.
                await self._ensure_fresh()
                decision = await self.store.decision(proposal.proposal_id)
                if decision is not None:
                    await self._publish(Effects(decisions=[decision]), envelope.origin_ts)

    async def on_report(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        del delivery
        report = envelope.data
        if getattr(report, "mode", self.mode) is not self.mode:
            return  # another mode's venue: not this portfolio
        async with self.gate:
            await self._ensure_fresh()
            now = self._clock.now()
            if isinstance(report, OrderFilled):
                if not await self._issued(report.intent_id):
                    _log.warning("fill refused: risk never issued its intent",
                                 intent_id=report.intent_id, trade_id=report.trade_id,
                                 product_id=report.product_id)  # fmt: skip
                    return
                fill = AppliedFill(report.trade_id, report.intent_id, report.product_id,
                                   report.side, report.price, report.size, report.fee)  # fmt: skip
                effects = self.engine.on_fill(fill, now)
            elif isinstance(report, IntentFinished):
                effects = self.engine.on_intent_finished(report, now)
            else:
                return
            await self._apply(effects, envelope.origin_ts)

    async def _issued(self, intent_id: str) -> bool:
        """Whether risk issued ``intent_id``: open here, or finished (a late fill) and in
        Postgres. A fill of any other intent is no position of ours."""
        return intent_id in self.engine.book.intents.by_id or await self.store.issued(intent_id)

    async def on_tick(self, envelope: Envelope[Payload], delivery: Delivery) -> None:
        del delivery
        tick = envelope.data
        if not isinstance(tick, TickUpdated):
            return
        quoted_at = datetime.fromtimestamp(envelope.origin_ts / 1_000_000_000, tz=UTC)
        async with self.gate:
            await self._ensure_fresh()
            effects = self.engine.on_tick(
                tick.product_id, tick.best_bid, tick.best_ask, self._clock.now(), quoted_at
            )
            if effects.watch is not None:  # new highs are frequent: flushed once a second
                self._watch_dirty, effects.watch = True, None
            if effects.durable() or effects.cancels:
                await self._apply(effects, envelope.origin_ts)

    # --- periodic work -----------------------------------------------------------------

    async def supervise(self) -> None:
        """Retry flatten exits, refresh product rules, keep the equity marks durable."""
        rules = product_rules(self.config, await self._catalog.all())
        async with self.gate:
            await self._ensure_fresh()
            now = self._clock.now()
            self.engine.set_rules(rules)
            effects = self.engine.supervise(now).merge(self.engine.watch_equity(now))
            if effects.watch is not None:
                self._watch_dirty, effects.watch = True, None
            if effects.durable() or effects.cancels:
                await self._apply(effects, None)
            if self._watch_dirty:
                await self.store.save_watch(self.engine.book.watch, now)
                self._watch_dirty = False
            self._export_gauges()

    # --- the operator's commands -------------------------------------------------------

    async def pause(self, actor: str, reason: str) -> TradingState:
        async with self.gate:
            await self._ensure_fresh()
            await self._apply(self.engine.pause(actor, reason, self._clock.now()), None)
            return self.engine.book.state

    async def resume(self, actor: str, reason: str, *, reset_peak: bool) -> TradingState:
        """Entries may open again; raises :class:`Conflict` when they must not yet."""
        async with self.gate:
            await self._ensure_fresh()
            effects = self.engine.resume(actor, reason, self._clock.now(), reset_peak=reset_peak)
            await self._apply(effects, None)
            return self.engine.book.state

    async def flatten(self, products: list[str] | None, actor: str, reason: str) -> FlattenJob:
        async with self.gate:
            await self._ensure_fresh()
            flatten_id = f"flt-{uuid.uuid4().hex[:12]}"
            job, effects = self.engine.flatten(flatten_id, products, actor, reason,
                                               self._clock.now())  # fmt: skip
            await self._apply(effects, None)
            return job

    async def flatten_job(self, flatten_id: str) -> FlattenJob | None:
        job = self.engine.jobs.get(flatten_id)
        return job if job is not None else await self.store.flatten_job(flatten_id)

    def status(self) -> dict[str, Any]:
        book, now = self.engine.book, self._clock.now()
        equity, policy = book.portfolio.equity(), book.policy
        themes = sorted({rule.theme for rule in book.rules.values() if rule.theme})
        return {
            "mode": self.mode.value,
            "trading": {"state": book.state.name, **book.state.to_json()},
            "equity": str(equity), "capital": str(self.capital),
            "realized_pnl": str(book.portfolio.realized_pnl()),
            "unrealized_pnl": str(book.portfolio.unrealized_pnl()),
            "fees": str(book.portfolio.fees()),
            "pnl_today": str(book.watch.day_pnl(equity)),
            "high_water_mark": None if book.watch.peak is None else str(book.watch.peak),
            "drawdown_pct": str(book.watch.drawdown_pct(equity)),
            "exposure_by_asset": {p: _share(exposure(book, p), equity) for p in sorted(book.rules)},
            "exposure_by_theme": {t: _share(theme_exposure(book, t), equity) for t in themes},
            "counters": {
                "open_trades": len(open_trades(book)), "max_open_trades": policy.max_open_trades,
                "entries_last_hour": book.windows.count(now, HOUR),
                "max_trades_per_hour": policy.max_trades_per_hour,
                "entries_last_day": book.windows.count(now, DAY),
                "max_trades_per_day": policy.max_trades_per_day,
                "entry_usd_last_hour": str(book.windows.quote_total(now, HOUR)),
                "entry_usd_last_day": str(book.windows.quote_total(now, DAY)),
                "open_intents": len(book.intents.by_id),
                "decisions": {o.value: n for o, n in self.engine.decisions_made.items()},
            },
            "flatten_jobs": sorted(self.engine.jobs),
        }  # fmt: skip

    def positions(self) -> list[dict[str, Any]]:
        book = self.engine.book
        rows = []
        for product_id, position in sorted(book.portfolio.positions.items()):
            mark = book.portfolio.marks.get(product_id)
            average = position.average_cost
            rows.append({
                "product_id": product_id, "base": str(position.base),
                "average_cost": None if average is None else str(average),
                "mark": None if mark is None else str(mark),
                "value": str(book.portfolio.value(product_id)),
                "realized_pnl": str(position.realized_pnl),
                "unrealized_pnl": str(position.unrealized_pnl(mark)), "fees": str(position.fees),
                "dust": book.portfolio.value(product_id) < book.policy.dust_threshold_usd,
            })  # fmt: skip
        return rows


def export_gauges(book: Book) -> None:
    """Set the gauges Prometheus reads from ``book``: state, equity, PnL, exposures."""
    equity = book.portfolio.equity()
    ENTRIES_ALLOWED.set(1 if book.state.entries_allowed else 0)
    for name in TRADING_STATES:
        TRADING_STATE.labels(name).set(1 if book.state.name == name else 0)
    EQUITY.set(float(equity))
    DRAWDOWN.set(float(book.watch.drawdown_pct(equity)))
    DAY_PNL.set(float(book.watch.day_pnl(equity)))
    REALIZED_PNL.set(float(book.portfolio.realized_pnl()))
    UNREALIZED_PNL.set(float(book.portfolio.unrealized_pnl()))
    FEES.set(float(book.portfolio.fees()))
    products: dict[str, Decimal] = {}
    themes: dict[str, Decimal] = {}
    # the products traded, and any no longer traded (delisted, say) still held
    still_held = (p for p, position in book.portfolio.positions.items() if position.base != 0)
    for product in {*book.rules, *still_held}:
        products[product] = held = exposure(book, product)
        rules = book.rules.get(product)
        if rules is not None and rules.theme:  # its products' (policy.theme_exposure)
            themes[rules.theme] = themes.get(rules.theme, Decimal(0)) + held
    _export_series(EXPOSURE, {p: float(_pct(v, equity)) for p, v in products.items()})
    _export_series(THEME_EXPOSURE, {t: float(_pct(v, equity)) for t, v in themes.items()})


_EXPORTED: dict[Gauge, set[str]] = {}


def _export_series(gauge: Gauge, values: dict[str, float]) -> None:
    """One series per label of ``values``; a label exported before and gone now loses its
    series, so a product risk no longer trades or holds shows no stale exposure."""
    for label in _EXPORTED.get(gauge, set()) - values.keys():
        gauge.remove(label)
    for label, value in values.items():
        gauge.labels(label).set(value)
    _EXPORTED[gauge] = set(values)


def _pct(value: Decimal, equity: Decimal) -> Decimal:
    return value * 100 / equity if equity > 0 else Decimal(0)


def _share(value: Decimal, equity: Decimal) -> dict[str, str]:
    return {"usd": str(value), "pct_of_equity": str(round(_pct(value, equity), 4))}
