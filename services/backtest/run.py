"""One backtest from files to results: histories streamed in, logs and statistics out."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from services.backtest.engine import Backtest, BacktestOptions, ProductHistory, ProductTrades
from services.backtest.ledger import TradeBook
from services.backtest.market import candle_time
from services.backtest.report import ClosedTrade, EquityLog, RunStats, Summary, TradeLog
from services.exchange_sim.catalog import CATALOG
from services.signal.strategies import build_strategies
from services.signal.strategies.base import Strategy
from shared.candle_files import Candle, iter_candles
from shared.config.models import AppConfig, StrategiesConfig
from shared.products import ProductInfo
from shared.slippage import CostModel
from shared.trade_files import TradePrint, iter_trades

__all__ = [
    "BacktestSpec", "RunOutput", "fee_model", "histories", "product_infos", "run_backtest",
    "select_strategies", "trade_histories",
]  # fmt: skip


@dataclass(frozen=True)
class BacktestSpec:
    config: AppConfig
    strategy_names: Sequence[str]
    data: Sequence[tuple[str, Path]]  # product id, candle file
    cost: CostModel
    options: BacktestOptions = BacktestOptions()
    end: datetime | None = None  # candles starting, prints made, at or after it are not read
    trades: Sequence[tuple[str, Path]] = ()  # product id, trades file

    def __post_init__(self) -> None:
        seen: dict[str, Path] = {}
        for product_id, path in [*self.data, *self.trades]:
            if product_id in seen:
                raise ValueError(
                    f"{product_id} is given twice ({seen[product_id]} and {path}):"
                    " one file a product, by --data or by --trades"
                )
            seen[product_id] = path

    @property
    def products(self) -> list[str]:
        return [product_id for product_id, _ in [*self.data, *self.trades]]


@dataclass
class RunOutput:
    summary: Summary
    trades: int
    candles: int


def select_strategies(
    config: AppConfig, names: Sequence[str], products: set[str]
) -> list[Strategy]:
    """The named strategies, each trading only the products there is data for."""
    chosen = []
    known = {entry.name: entry for entry in config.strategies.strategies}
    for name in names:
        entry = known.get(name)
        if entry is None:
            raise ValueError(f"no strategy {name!r} in strategies.yaml; known: {sorted(known)}")
        traded = [p for p in entry.products if p in products]
        if not traded:
            raise ValueError(
                f"strategy {name!r} trades {entry.products};"
                " no --data or --trades file is for any of them"
            )
        chosen.append(entry.model_copy(update={"products": traded, "enabled": True}))
    return build_strategies(StrategiesConfig(strategies=chosen))


def histories(data: Sequence[tuple[str, Path]], end: datetime | None) -> list[ProductHistory]:
    """One streamed history per file; the granularity is the step between its first candles."""
    result = []
    for product_id, path in data:
        candles = iter_candles(path)
        head = list(itertools.islice(candles, 2))
        if len(head) < 2:
            raise ValueError(f"{path}: a backtest needs at least two candles")
        granularity = head[1].start - head[0].start
        stream: Iterator[Candle] = itertools.chain(head, candles)
        if end is not None:
            stream = itertools.takewhile(lambda c: candle_time(c.start) < end, stream)
        result.append(ProductHistory(product_id, granularity, stream))
    return result


def trade_histories(
    trades: Sequence[tuple[str, Path]], end: datetime | None
) -> list[ProductTrades]:
    """One streamed history of prints per file."""
    result = []
    for product_id, path in trades:
        prints = iter_trades(path)
        head = list(itertools.islice(prints, 1))
        if not head:
            raise ValueError(f"{path}: a backtest needs at least one print")
        stream: Iterator[TradePrint] = itertools.chain(head, prints)
        if end is not None:
            stream = itertools.takewhile(lambda t: t.time < end, stream)
        result.append(ProductTrades(product_id, stream))
    return result


def product_infos(products: Sequence[str], at: datetime) -> dict[str, ProductInfo]:
    """Coinbase's increments and limits for each product, as exchange-sim lists them."""
    infos = {}
    for product_id in products:
        listing = CATALOG.get(product_id)
        if listing is None:
            raise ValueError(f"no increments known for {product_id}; known: {sorted(CATALOG)}")
        rules = listing.rules
        infos[product_id] = ProductInfo(
            product_id=product_id, base_increment=rules.base_increment,
            quote_increment=rules.quote_increment, price_increment=rules.price_increment,
            base_min_size=rules.base_min_size, base_max_size=rules.base_max_size,
            quote_min_size=rules.quote_min_size, quote_max_size=rules.quote_max_size,
            status="online", trading_disabled=False, cancel_only=False, limit_only=False,
            post_only=False, entries_allowed=True, updated_at=at,
        )  # fmt: skip
    return infos


class _Recorder:
    """Fills into trades, candles into equity samples: statistics and, optionally, logs."""

    def __init__(self, backtest: Backtest, book: TradeBook, out_dir: Path | None) -> None:
        self.backtest = backtest
        self.book = book
        self.stats = RunStats(backtest.options.capital)
        self.trades = 0
        self.candles = 0
        self.trade_log = TradeLog(out_dir / "trades.csv") if out_dir else None
        self.equity_log = EquityLog(out_dir / "equity.csv") if out_dir else None

    def trade(self, trade: ClosedTrade | None) -> None:
        if trade is None:
            return
        self.trades += 1
        self.stats.record_trade(trade)
        if self.trade_log:
            self.trade_log.write(trade)

    def sample(self) -> None:
        self.candles += 1
        now = self.backtest.clock.now()
        equity = self.backtest.risk.book.portfolio.equity()
        exposed = self.book.exposed()
        self.stats.observe(now, equity, exposed)
        if self.equity_log:
            self.equity_log.write(now, equity, self.stats.drawdown_pct, exposed)

    def close(self) -> None:
        for log in (self.trade_log, self.equity_log):
            if log is not None:
                log.close()


async def run_backtest(
    spec: BacktestSpec,
    *,
    out_dir: Path | None = None,
    on_candle: Callable[[], object] | None = None,
    prepare: Callable[[Backtest], None] | None = None,
) -> RunOutput:
    """Run ``spec``; with ``out_dir``, write trades.csv and equity.csv there as it goes."""
    products = spec.products
    strategies = select_strategies(spec.config, spec.strategy_names, set(products))
    infos = product_infos(products, candle_time(0))
    backtest = Backtest(spec.config, strategies, infos, spec.cost, spec.options)
    if prepare is not None:
        prepare(backtest)
    book = TradeBook({p: i.base_increment for p, i in infos.items()}, backtest.exit_reasons)
    recorder = _Recorder(backtest, book, out_dir)

    def candle_closed(product_id: str, candle: Candle) -> None:
        del product_id, candle
        recorder.sample()
        if on_candle is not None:
            on_candle()

    backtest.observers.fill.append(lambda fill: recorder.trade(book.on_fill(fill)))
    backtest.observers.candle.append(candle_closed)
    try:
        streams: list[ProductHistory | ProductTrades] = [*histories(spec.data, spec.end)]
        streams += trade_histories(spec.trades, spec.end)
        await backtest.run(streams)
        for trade in book.close_open(backtest.risk.book.portfolio.marks, backtest.clock.now()):
            recorder.trade(trade)
    finally:
        recorder.close()
    return RunOutput(recorder.stats.summary(), recorder.trades, recorder.candles)


def fee_model(cost: CostModel, fees: str | None) -> CostModel:
    """``--fees``: "none", or "MAKER/TAKER" in bps; None keeps the configured rates."""
    if fees is None:
        return cost
    if fees == "none":
        return cost.without_fees()
    try:
        maker, taker = (Decimal(part) for part in fees.split("/"))
    except (ValueError, ArithmeticError):
        raise ValueError(
            f"--fees takes 'none' or MAKER/TAKER in bps, like 60/120; got {fees!r}"
        ) from None
    return CostModel(cost.tiers, maker, taker, cost.slippage, cost.source)
