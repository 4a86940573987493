"""The backtest over small hand-made histories: the services' cores, driven in time order."""

from __future__ import annotations

import asyncio
import random
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from services.backtest import engine
from services.backtest.__main__ import main
from services.backtest.engine import Backtest, BacktestOptions
from services.backtest.market import ModelMarket, Waypoint, candle_time
from services.backtest.run import BacktestSpec, run_backtest
from shared.candle_files import Candle, write_candles
from shared.config import load_config
from shared.matching.types import ProductRules
from shared.messages import DecisionOutcome, Liquidity, OrderFilled, ProposalDecided
from shared.money import Side
from shared.slippage import CostModel

D = Decimal
START = 1_767_225_600  # 2026-01-01T00:00:00Z
CONFIG = Path("config")


def _config(tmp_path: Path, **risk: object) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["risk"].update(risk)
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    strategy = {
        "name": "quick", "kind": "ema_cross", "products": ["BTC-USD"], "granularity_s": 60,
        "quote_size_usd": 100,
        "params": {"fast_period": 2, "slow_period": 3, "atr_period": 2,
                   "atr_stop_multiple": 20, "reward_risk_ratio": 20},
    }  # fmt: skip
    (target / "strategies.yaml").write_text(yaml.safe_dump({"strategies": [strategy]}))
    return target


def _history(path: Path, closes: list[int]) -> Path:
    """Flat candles (open = close = low = high) at these closes, one a minute."""
    candles = [Candle(START + 60 * i, D(c), D(c), D(c), D(c), D(5)) for i, c in enumerate(closes)]
    write_candles(path, candles)
    return path


# Down, then a turn up (fast over slow: entry), then down again (exit).
CLOSES = [100, 99, 98, 97, 96, 95, 97, 100, 104, 108, 107, 103, 99, 95, 94, 93]


def _run(tmp_path: Path, cost: CostModel | None = None, **options: object) -> tuple:
    config_dir = _config(tmp_path, stop_loss_pct=50, take_profit_pct=500)
    config = load_config(config_dir)
    history = _history(tmp_path / "BTC-USD.csv", [c * 1000 for c in CLOSES])
    model = cost or CostModel.from_config(config.universe, config.policy.execution)
    spec = BacktestSpec(
        config=config, strategy_names=["quick"], data=[("BTC-USD", history)], cost=model,
        options=BacktestOptions(**options),  # type: ignore[arg-type]
    )  # fmt: skip
    fills: list[OrderFilled] = []
    decisions: list[ProposalDecided] = []

    def watch(backtest: Backtest) -> None:
        backtest.observers.fill.append(fills.append)
        backtest.observers.decision.append(decisions.append)

    output = asyncio.run(run_backtest(spec, prepare=watch))
    return output, fills, decisions


def test_costs_off_buys_at_the_next_open_and_sells_on_the_cross_back(tmp_path: Path) -> None:
    free = CostModel().without_fees().without_slippage()
    output, fills, decisions = _run(tmp_path, free, latency=timedelta(0))
    assert [d.outcome for d in decisions] == [DecisionOutcome.APPROVED] * 2
    assert [(f.side, f.price, f.fee) for f in fills] == [
        (Side.BUY, D(104_000), D(0)),  # the cross up on the 100 close, filled at the next open
        (Side.SELL, D(99_000), D(0)),  # the cross back on the 103 close, the next open
    ]
    assert fills[0].filled_at == datetime.fromtimestamp(START + 8 * 60, UTC)
    assert fills[1].filled_at == datetime.fromtimestamp(START + 12 * 60, UTC)
    assert fills[0].price == fills[0].arrival_mid  # the reference mid is the next open too
    assert output.trades == 1 and output.candles == len(CLOSES)
    assert fills[0].size == D("0.00096153")  # $100 at 104,000, floored to the increment
    assert output.summary.final_equity == 10_000 + (D(99_000) - D(104_000)) * D("0.00096153")


def test_the_model_charges_fees_and_slippage_on_the_same_trades(tmp_path: Path) -> None:
    _, fills, _ = _run(tmp_path / "model")
    buys = [f for f in fills if f.side is Side.BUY]
    sells = [f for f in fills if f.side is Side.SELL]
    # The maker entry cannot fill on a flat market: after the 20 s maker wait it goes
    # taker, walking the model's book (its first level holds $50, so two levels), and
    # pays about 10 bps of tier-1 slippage over the 104,000 mid plus the 120 bps fee.
    assert all(f.liquidity is Liquidity.TAKER for f in fills) and len(buys) == 2
    assert buys[0].filled_at == datetime.fromtimestamp(START + 8 * 60 + 20.1, UTC)
    bought = sum(f.size for f in buys)
    average = sum(f.price * f.size for f in buys) / bought
    assert D(104_000) * D("1.0010") < average < D(104_000) * D("1.0012")
    assert all(f.fee == (f.price * f.size * D("0.012")).quantize(D("0.01")) for f in fills)
    assert sum(f.size for f in sells) == bought
    assert all(D(99_000) * D("0.9988") < f.price < D(99_000) * D("0.9990") for f in sells)


def test_candles_before_trade_from_only_warm_the_strategies_up(tmp_path: Path) -> None:
    after_entry = datetime.fromtimestamp(START + 9 * 60, UTC)
    _, fills, decisions = _run(tmp_path, trade_from=after_entry)
    assert fills == []  # the entry was history: only the exit is proposed, with nothing held
    assert [(d.action.value, d.outcome, d.reasons) for d in decisions] == [
        ("EXIT", DecisionOutcome.REJECTED, ("nothing_held",))
    ]


def test_the_cli_writes_the_report_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = _config(tmp_path)
    history = _history(tmp_path / "BTC-USD.csv", [c * 1000 for c in CLOSES])
    out = tmp_path / "out"
    args = ["--strategy", "quick", "--data", str(history), "--config-dir", str(config_dir),
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Return without costs" in printed
    for name in ("trades.csv", "equity.csv", "equity.png", "report.html", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert main([*args, "--strategy", "nope"]) == 2
    assert "no strategy 'nope'" in capsys.readouterr().err
    assert main([*args, "--slippage", "calibrated", "--calibration", "missing.json"]) == 2
    assert "run python -m services.calibrate first" in capsys.readouterr().err


def test_a_stop_crossed_inside_a_leg_fires_where_the_bid_reaches_it() -> None:
    rules = ProductRules("BTC-USD", D("0.00000001"), D("0.01"), D("0.01"), D("0.00000001"),
                         D(1000), D(1), D(10**7))  # fmt: skip
    market = ModelMarket(CostModel(), {"BTC-USD": rules}, {"BTC-USD": 1})
    start = datetime.fromtimestamp(START, UTC)
    a, b = Waypoint(start, D(100_000)), Waypoint(start + timedelta(seconds=20), D(98_000))
    crossing = market.crossing("BTC-USD", D(99_000), a, b)
    assert crossing is not None and a.time < crossing.time < b.time
    bid, _ = market.quote("BTC-USD", crossing.mid)
    assert bid <= D(99_000) < market.quote("BTC-USD", crossing.mid + D(20))[0]
    assert market.crossing("BTC-USD", D(97_000), a, b) is None  # never reached on this leg


def test_a_stop_crossed_inside_a_candle_sells_at_the_stop_not_at_the_low(tmp_path: Path) -> None:
    """Entered on the turn up; then a candle falls from 108,000 to a 90,000 low. The stop
    (3% under the entry) is crossed between the candle's high and its low: the exit is
    placed at that moment, on that moment's book, and fills there."""
    config = load_config(_config(tmp_path, stop_loss_pct=3, take_profit_pct=500))
    closes = [c * 1000 for c in CLOSES[:10]]
    candles = [Candle(START + 60 * i, D(c), D(c), D(c), D(c), D(5)) for i, c in enumerate(closes)]
    crash = Candle(START + 60 * len(closes), D(90_000), D(108_000), D(108_000), D(91_000), D(5))
    write_candles(tmp_path / "BTC-USD.csv", [*candles, crash])
    spec = BacktestSpec(
        config=config, strategy_names=["quick"], data=[("BTC-USD", tmp_path / "BTC-USD.csv")],
        cost=CostModel().without_fees().without_slippage(), options=BacktestOptions(),
    )  # fmt: skip
    fills: list[OrderFilled] = []
    asyncio.run(run_backtest(spec, prepare=lambda b: b.observers.fill.append(fills.append)))
    entry = next(f for f in fills if f.side is Side.BUY)
    stop = next(f for f in fills if f.intent_id.startswith("stop_loss:"))
    level = entry.price * D("0.97")
    assert abs(stop.price - level) / level < D("0.001"), (entry.price, stop.price)
    share = float((108_000 - level) / 18_000)  # of the leg from the high to the low
    crossed_at = candle_time(crash.start) + timedelta(seconds=20) * (1 + share)
    assert abs((stop.filled_at - crossed_at).total_seconds()) < 1.5, (stop.filled_at, crossed_at)


def test_skipping_a_repeated_quote_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candle opening where the last one closed repeats the quote risk just took; the
    backtest skips it. With the skip disabled the run must be identical. One candle in
    five opens on a gap: that quote is news and must reach risk."""
    rng = random.Random(3)
    price, candles = 60_000.0, []
    for index in range(1_500):  # past a UTC midnight: the daily loss limit resets
        if rng.random() < 0.2:
            price = float(f"{price * (1 + rng.gauss(0.0, 0.006)):.2f}")
        path = [price]
        for _ in range(3):
            price *= 1 + rng.gauss(0.0, 0.004)
            path.append(price)
        low, high = min(path), max(path)
        candles.append(Candle(START + 60 * index, D(f"{low:.2f}"), D(f"{high:.2f}"),
                              D(f"{path[0]:.2f}"), D(f"{price:.2f}"), D(5)))  # fmt: skip
        price = float(f"{price:.2f}")
    history = tmp_path / "BTC-USD.csv"
    write_candles(history, candles)
    config = load_config(
        _config(
            tmp_path,
            stop_loss_pct=0.5,
            take_profit_pct=0.8,
            daily_loss_limit_pct=1.5,
            max_drawdown_pct=3,
            new_trade_cooldown_s=0,
            max_trades_per_hour=60,
            max_trades_per_day=1_000,
        )  # fmt: skip
    )

    def run() -> tuple[list, list, int]:
        spec = BacktestSpec(
            config=config, strategy_names=["quick"], data=[("BTC-USD", history)],
            cost=CostModel.from_config(config.universe, config.policy.execution),
            options=BacktestOptions(),
        )  # fmt: skip
        fills: list[OrderFilled] = []
        decisions: list[ProposalDecided] = []
        ticks = [0]

        def watch(backtest: Backtest) -> None:
            backtest.observers.fill.append(fills.append)
            backtest.observers.decision.append(decisions.append)
            on_tick = backtest.risk.on_tick

            def counted(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
                ticks[0] += 1
                return on_tick(*args, **kwargs)  # type: ignore[arg-type]

            backtest.risk.on_tick = counted  # type: ignore[method-assign]

        asyncio.run(run_backtest(spec, prepare=watch))
        return fills, decisions, ticks[0]

    fills, decisions, ticks = run()
    with monkeypatch.context() as patch:
        patch.setattr(engine.Backtest, "_repeats", lambda self, product_id, point: False)
        all_fills, all_decisions, all_ticks = run()
    assert ticks < all_ticks  # the skip happened
    exits = {f.intent_id.split(":")[0] for f in fills if f.side is Side.SELL}
    assert {"stop_loss", "take_profit"} <= exits  # both fired, on gaps and inside legs
    assert len({d.reasons for d in decisions}) > 2  # approvals and refusals of two kinds
    assert fills == all_fills
    assert decisions == all_decisions
