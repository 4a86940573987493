"""Backtest speed against an established backtester, on the same candles and strategy.

Both run an EMA(12)/EMA(26) crossover, long only, over the same one-minute candles with
fees and slippage off: ours through the services' strategy, risk and execution code
(a wide-open risk policy, fills at the mid), the peer (backtrader, installed for the
benchmark only from requirements/bench.lock) with its own EMA and crossover. An order
decided on a candle's close fills at the next candle's open in both. Trades are the
same when every round trip has the same entry and exit time and price.
"""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from services.backtest.engine import Backtest, BacktestOptions
from services.backtest.run import BacktestSpec, run_backtest
from shared.candle_files import COLUMNS
from shared.config import load_config
from shared.messages import OrderFilled
from shared.money import Side
from shared.slippage import CostModel

__all__ = ["run"]

CANDLES = 100_000
FAST, SLOW = 12, 26
START = datetime(2025, 1, 1, tzinfo=UTC)
Trade = tuple[datetime, Decimal, datetime, Decimal]


def write_history(path: Path, count: int, seed: int = 7) -> None:
    """One-minute BTC-USD candles: a seeded random walk on the cent grid, each candle
    opening at the previous close."""
    rng = random.Random(seed)
    price = 60_000.0
    start = int(START.timestamp())
    with path.open("w") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for index in range(count):
            path_points = [price]
            for _ in range(4):
                price *= math.exp(rng.gauss(0.0, 0.0008))
                path_points.append(price)
            cents = [round(p * 100) for p in path_points]
            price = cents[-1] / 100
            low, high = min(cents) / 100, max(cents) / 100
            handle.write(
                f"{start + 60 * index},{low:.2f},{high:.2f},{cents[0] / 100:.2f},"
                f"{price:.2f},{rng.uniform(1, 20):.8f}\n"
            )


def bench_config(target: Path) -> Path:
    """config/ with the crossover and a risk policy that never stands in its way."""
    shutil.copytree(Path("config"), target)
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["risk"].update(
        stop_loss_pct=100, take_profit_pct=1000, max_open_trades=500,
        max_trades_per_hour=100_000, max_trades_per_day=2_400_000,
        hourly_budget_usd=10**12, daily_budget_usd=24 * 10**12, new_trade_cooldown_s=0,
        daily_loss_limit_pct=100, max_drawdown_pct=100,
    )  # fmt: skip
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    strategy = {
        "name": "bench_ema", "kind": "ema_cross", "products": ["BTC-USD"],
        "granularity_s": 60, "quote_size_usd": 100,
        # stops this far away never fire: the peer's crossover has none
        "params": {"fast_period": FAST, "slow_period": SLOW, "atr_period": 14,
                   "atr_stop_multiple": 20, "reward_risk_ratio": 20},
    }  # fmt: skip
    (target / "strategies.yaml").write_text(yaml.safe_dump({"strategies": [strategy]}))
    return target


def ours(history: Path, config_dir: Path) -> tuple[float, list[Trade]]:
    config = load_config(config_dir)
    cost = CostModel.from_config(config.universe, config.policy.execution)
    spec = BacktestSpec(
        config=config, strategy_names=["bench_ema"], data=[("BTC-USD", history)],
        cost=cost.without_fees().without_slippage(),
        options=BacktestOptions(latency=timedelta(0), capital=Decimal(1_000_000)),
    )  # fmt: skip
    fills: list[OrderFilled] = []

    def watch(backtest: Backtest) -> None:
        backtest.observers.fill.append(fills.append)

    started = time.perf_counter()
    output = asyncio.run(run_backtest(spec, prepare=watch))
    elapsed = time.perf_counter() - started
    buys = [(f.filled_at, f.price) for f in fills if f.side is Side.BUY]
    sells = [(f.filled_at, f.price) for f in fills if f.side is Side.SELL]
    trades = [(b[0], b[1], s[0], s[1]) for b, s in zip(buys, sells, strict=False)]
    return output.candles / elapsed, trades


def peer(history: Path, candles: int) -> tuple[float, list[Trade]]:
    import backtrader as bt  # type: ignore[import-untyped]  # installed for the bench only

    executions: list[tuple[bool, datetime, Decimal]] = []

    class Crossover(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            fast = bt.ind.EMA(period=FAST)
            slow = bt.ind.EMA(period=SLOW)
            self.cross = bt.ind.CrossOver(fast, slow)

        def next(self) -> None:
            if not self.position and self.cross > 0:
                self.buy(size=0.001)
            elif self.position and self.cross < 0:
                self.close()

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                moment = bt.num2date(order.executed.dt).replace(tzinfo=UTC)
                price = Decimal(f"{order.executed.price:.2f}")
                executions.append((order.isbuy(), moment, price))

    started = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.GenericCSVData(
        dataname=str(history), dtformat=lambda s: datetime.fromtimestamp(int(s), UTC).replace(
            tzinfo=None), timeframe=bt.TimeFrame.Minutes, datetime=0, low=1, high=2, open=3,
        close=4, volume=5, openinterest=-1,
    ))  # fmt: skip
    cerebro.addstrategy(Crossover)
    cerebro.broker.setcash(10**9)
    cerebro.run()
    elapsed = time.perf_counter() - started
    buys = [(m, p) for is_buy, m, p in executions if is_buy]
    sells = [(m, p) for is_buy, m, p in executions if not is_buy]
    trades = [(b[0], b[1], s[0], s[1]) for b, s in zip(buys, sells, strict=False)]
    return candles / elapsed, trades


def run(candles: int = CANDLES) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        history = Path(scratch) / "BTC-USD.csv"
        write_history(history, candles)
        config_dir = bench_config(Path(scratch) / "config")
        our_rate, our_trades = ours(history, config_dir)
        peer_rate, peer_trades = peer(history, candles)
    same = "yes" if our_trades == peer_trades and our_trades else "no"
    return (
        f"BENCH backtest candles_per_s={our_rate:.0f} peer=backtrader "
        f"peer_candles_per_s={peer_rate:.0f} same_trades={same} trades={len(our_trades)}"
    )
