"""Strategies against from-scratch references, their invariants, and the engine's routing."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from services.signal.engine import SignalEngine
from services.signal.strategies import (
    Breakout,
    EmaCross,
    MeanReversion,
    Signal,
    Strategy,
    build_strategies,
)
from services.signal.strategies.ema_cross import atr_bracket
from shared.candle_files import Candle
from shared.config import load_config
from shared.config.models import StrategiesConfig, StrategyKind
from shared.messages import ProposalAction
from shared.money import Side

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SEEDS = (1, 2, 3, 4)
GRANULARITY = 300
QUOTE = Decimal("100")
ENTRY, EXIT = ProposalAction.ENTRY, ProposalAction.EXIT


def random_walk(seed: int, count: int = 500) -> list[Candle]:
    """Log-normal random walk around 100, each candle opening at the previous close."""
    rng = random.Random(seed)
    close = 100.0
    candles = []
    for index in range(count):
        open_ = close
        close = open_ * math.exp(rng.gauss(0.0, 0.01))
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, 0.004)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, 0.004)))
        low_, high_, open_d, close_d = (Decimal(f"{x:.4f}") for x in (low, high, open_, close))
        start = 1_700_000_100 + index * GRANULARITY
        candles.append(Candle(start, low_, high_, open_d, close_d, Decimal(1)))
    return candles


def run(strategy: Strategy, product_id: str, candles: Sequence[Candle]) -> list[Signal]:
    return [s for c in candles if (s := strategy.on_candle(product_id, c)) is not None]


# --- references: every indicator recomputed from the whole prefix at every candle ---


class Expected(NamedTuple):
    start: int
    action: ProposalAction
    stop_loss: float | None = None
    take_profit: float | None = None


def ema_at(values: Sequence[float], period: int) -> float | None:
    if len(values) < period:
        return None
    alpha = 2 / (period + 1)
    ema = sum(values[:period]) / period
    for value in values[period:]:
        ema = alpha * value + (1 - alpha) * ema
    return ema


def rsi_at(values: Sequence[float], period: int) -> float | None:
    if len(values) < period + 1:
        return None
    changes = [after - before for before, after in zip(values, values[1:], strict=False)]
    gains = [max(change, 0.0) for change in changes]
    losses = [max(-change, 0.0) for change in changes]
    gain, loss = sum(gains[:period]) / period, sum(losses[:period]) / period
    for up, down in zip(gains[period:], losses[period:], strict=True):
        gain, loss = (gain * (period - 1) + up) / period, (loss * (period - 1) + down) / period
    if gain == loss == 0:
        return 50.0
    return 100.0 if loss == 0 else 100 - 100 / (1 + gain / loss)


def atr_at(candles: Sequence[Candle], period: int) -> float | None:
    if len(candles) < period:
        return None
    ranges = [float(candles[0].high - candles[0].low)]
    for before, candle in zip(candles, candles[1:], strict=False):
        high, low, close = float(candle.high), float(candle.low), float(before.close)
        ranges.append(max(high - low, abs(high - close), abs(low - close)))
    atr = sum(ranges[:period]) / period
    for true_range in ranges[period:]:
        atr = (atr * (period - 1) + true_range) / period
    return atr


def bands_at(values: Sequence[float], period: int, k: float) -> tuple[float, float, float] | None:
    if len(values) < period:
        return None
    window = values[-period:]
    mean = sum(window) / period
    deviation = math.sqrt(sum((value - mean) ** 2 for value in window) / period)
    return mean - k * deviation, mean, mean + k * deviation


def bracket(close: float, atr: float, multiple: Decimal, ratio: Decimal) -> tuple[Any, float]:
    stop = close - float(multiple) * atr
    return (stop if stop > 0 else None), close + float(ratio * multiple) * atr


def reference_ema_cross(candles: Sequence[Candle], **p: Any) -> list[Expected]:
    closes = [float(c.close) for c in candles]
    out, holding = [], False
    for i in range(1, len(candles)):
        fast, slow = (
            ema_at(closes[: i + 1], p["fast_period"]),
            ema_at(closes[: i + 1], p["slow_period"]),
        )
        was_fast, was_slow = (
            ema_at(closes[:i], p["fast_period"]),
            ema_at(closes[:i], p["slow_period"]),
        )
        if fast is None or slow is None or was_fast is None or was_slow is None:
            continue
        atr = atr_at(candles[: i + 1], p["atr_period"])
        if not holding and was_fast <= was_slow and fast > slow and atr is not None:
            stop, take = bracket(closes[i], atr, p["atr_stop_multiple"], p["reward_risk_ratio"])
            out.append(Expected(candles[i].start, ENTRY, stop, take))
            holding = True
        elif holding and was_fast >= was_slow and fast < slow:
            out.append(Expected(candles[i].start, EXIT))
            holding = False
    return out


def reference_mean_reversion(candles: Sequence[Candle], **p: Any) -> list[Expected]:
    closes = [float(c.close) for c in candles]
    out, holding = [], False
    for i, close in enumerate(closes):
        rsi = rsi_at(closes[: i + 1], p["rsi_period"])
        bands = bands_at(closes[: i + 1], p["bollinger_period"], float(p["bollinger_stddev"]))
        if rsi is None or bands is None:
            continue
        lower, middle, upper = bands
        if holding and (close >= upper or rsi >= p["overbought"]):
            out.append(Expected(candles[i].start, EXIT))
            holding = False
        elif not holding and rsi <= p["oversold"] and close <= lower < middle:
            stop = close - (middle - lower)
            out.append(Expected(candles[i].start, ENTRY, stop if stop > 0 else None, middle))
            holding = True
    return out


def reference_breakout(candles: Sequence[Candle], **p: Any) -> list[Expected]:
    period = p["donchian_period"]
    out, holding = [], False
    for i in range(period, len(candles)):
        before = candles[i - period : i]
        upper, lower = max(float(c.high) for c in before), min(float(c.low) for c in before)
        close = float(candles[i].close)
        atr = atr_at(candles[: i + 1], p["atr_period"])
        if holding and close < lower:
            out.append(Expected(candles[i].start, EXIT))
            holding = False
        elif not holding and close > upper and atr is not None:
            stop, take = bracket(close, atr, p["atr_stop_multiple"], p["reward_risk_ratio"])
            out.append(Expected(candles[i].start, ENTRY, stop, take))
            holding = True
    return out


def d(text: str) -> Decimal:
    return Decimal(text)


CASES: list[tuple[type[Strategy], Callable[..., list[Expected]], dict[str, Any]]] = [
    (EmaCross, reference_ema_cross, {"fast_period": 12, "slow_period": 26, "atr_period": 14,
     "atr_stop_multiple": d("2"), "reward_risk_ratio": d("2")}),
    (EmaCross, reference_ema_cross, {"fast_period": 5, "slow_period": 13, "atr_period": 7,
     "atr_stop_multiple": d("1.5"), "reward_risk_ratio": d("3")}),
    (MeanReversion, reference_mean_reversion, {"rsi_period": 14, "oversold": d("30"),
     "overbought": d("70"), "bollinger_period": 20, "bollinger_stddev": d("2")}),
    (MeanReversion, reference_mean_reversion, {"rsi_period": 7, "oversold": d("25"),
     "overbought": d("65"), "bollinger_period": 10, "bollinger_stddev": d("1.5")}),
    (Breakout, reference_breakout, {"donchian_period": 20, "atr_period": 14,
     "atr_stop_multiple": d("2"), "reward_risk_ratio": d("2")}),
    (Breakout, reference_breakout, {"donchian_period": 10, "atr_period": 5,
     "atr_stop_multiple": d("3"), "reward_risk_ratio": d("1.5")}),
]  # fmt: skip
DEFAULTS = {cls: params for cls, _, params in reversed(CASES)}  # the first case of each class


def make(cls: type[Strategy], products: Sequence[str], **params: Any) -> Strategy:
    merged = {**DEFAULTS[cls], **params}
    return cls(f"test_{cls.__name__.lower()}", products, GRANULARITY, QUOTE, **merged)


def assert_level(got: Decimal | None, want: float | None) -> None:
    assert (got is None) == (want is None), (got, want)
    if got is not None and want is not None:
        assert math.isclose(float(got), want, rel_tol=1e-6), (got, want)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("cls", "reference", "params"), CASES)
def test_signals_equal_the_reference(
    cls: type[Strategy], reference: Callable[..., list[Expected]], params: dict[str, Any], seed: int
) -> None:
    candles = random_walk(seed)
    expected = reference(candles, **params)
    actions = [e.action for e in expected]
    assert actions.count(ENTRY) >= 3 and actions.count(EXIT) >= 3, actions
    got = run(make(cls, ["BTC-USD"], **params), "BTC-USD", candles)
    assert [(s.candle_start, s.action) for s in got] == [(e.start, e.action) for e in expected]
    for signal, want in zip(got, expected, strict=True):
        assert_level(signal.stop_loss, want.stop_loss)
        assert_level(signal.take_profit, want.take_profit)


# --- invariants ---

CLASSES = [EmaCross, MeanReversion, Breakout]


@pytest.mark.parametrize("cls", CLASSES)
def test_entries_and_exits_alternate_starting_with_an_entry(cls: type[Strategy]) -> None:
    for seed in SEEDS:
        strategy = make(cls, ["BTC-USD"])
        actions = []
        for candle in random_walk(seed):
            holding = strategy.in_position("BTC-USD")
            signal = strategy.on_candle("BTC-USD", candle)
            if signal is not None:
                assert signal.action is (EXIT if holding else ENTRY)
                actions.append(signal.action)
            assert strategy.in_position("BTC-USD") == (bool(actions) and actions[-1] is ENTRY)
        assert len(actions) >= 4
        assert set(actions[::2]) == {ENTRY} and set(actions[1::2]) == {EXIT}


@pytest.mark.parametrize("cls", CLASSES)
def test_products_are_independent(cls: type[Strategy]) -> None:
    btc, eth = random_walk(11), random_walk(12)
    both = make(cls, ["BTC-USD", "ETH-USD"])
    got: dict[str, list[Signal]] = {"BTC-USD": [], "ETH-USD": []}
    for pair in zip(btc, eth, strict=True):
        for product_id, candle in zip(got, pair, strict=True):
            if (signal := both.on_candle(product_id, candle)) is not None:
                got[product_id].append(signal)
    assert got["BTC-USD"] and got["ETH-USD"]
    assert got["BTC-USD"] == run(make(cls, ["BTC-USD"]), "BTC-USD", btc)
    assert got["ETH-USD"] == run(make(cls, ["ETH-USD"]), "ETH-USD", eth)


@pytest.mark.parametrize("cls", CLASSES)
def test_signal_ids_are_deterministic_and_distinct(cls: type[Strategy]) -> None:
    candles = random_walk(7)
    first = run(make(cls, ["BTC-USD"]), "BTC-USD", candles)
    second = run(make(cls, ["BTC-USD"]), "BTC-USD", candles)
    ids = [signal.signal_id for signal in first]
    assert len(ids) >= 2 and ids == [signal.signal_id for signal in second]
    assert len(set(ids)) == len(ids)
    flipped = replace(first[0], action=EXIT if first[0].action is ENTRY else ENTRY)
    assert flipped.signal_id != first[0].signal_id


@pytest.mark.parametrize("cls", CLASSES)
def test_signal_fields(cls: type[Strategy]) -> None:
    candles = random_walk(8)
    closes = {candle.start: candle.close for candle in candles}
    signals = run(make(cls, ["BTC-USD"]), "BTC-USD", candles)
    assert signals
    for signal in signals:
        assert (signal.strategy, signal.product_id) == (f"test_{cls.__name__.lower()}", "BTC-USD")
        assert (signal.granularity_s, signal.quote_size) == (GRANULARITY, QUOTE)
        assert signal.reference_price == closes[signal.candle_start]
        if signal.action is ENTRY:
            assert signal.side is Side.BUY
            assert signal.stop_loss is not None and signal.take_profit is not None
            assert signal.stop_loss < signal.reference_price < signal.take_profit
        else:
            assert signal.side is Side.SELL
            assert signal.stop_loss is None and signal.take_profit is None


def test_ema_cross_reasons_name_the_periods() -> None:
    signals = run(make(EmaCross, ["BTC-USD"]), "BTC-USD", random_walk(1))
    assert signals[0].reason == "ema 12 crossed above ema 26"
    assert signals[1].reason == "ema 12 crossed below ema 26"


def test_a_stop_at_or_below_zero_is_none() -> None:
    assert atr_bracket(10.0, 6.0, 2.0, 2.0) == (None, Decimal("34"))
    assert atr_bracket(10.0, 5.0, 2.0, 2.0) == (None, Decimal("30"))
    assert atr_bracket(10.0, 2.5, 2.0, 3.0) == (Decimal("5"), Decimal("25"))
    wide = Candle(0, Decimal(1), Decimal(20), Decimal(10), Decimal(10), Decimal(1))
    spike = Candle(3 * GRANULARITY, Decimal(1), Decimal(30), Decimal(10), Decimal(25), Decimal(1))
    candles = [replace(wide, start=i * GRANULARITY) for i in range(3)] + [spike]
    strategy = make(Breakout, ["BTC-USD"], donchian_period=2, atr_period=2)
    [signal] = run(strategy, "BTC-USD", candles)
    # ATR = (19 + 29) / 2 = 24, so the stop would be 25 - 2 * 24 < 0.
    assert (signal.action, signal.stop_loss, signal.take_profit) == (ENTRY, None, Decimal(121))


def test_breakout_needs_a_close_strictly_outside_the_prior_channel() -> None:
    def bar(index: int, low: str, high: str, close: str) -> Candle:
        return Candle(index * GRANULARITY, d(low), d(high), d(close), d(close), d("1"))

    strategy = make(Breakout, ["BTC-USD"], donchian_period=2, atr_period=2)
    feed = [bar(0, "9", "11", "10"), bar(1, "9", "11", "10"), bar(2, "9", "11", "11")]
    assert run(strategy, "BTC-USD", feed) == []  # 11 equals the prior high: no breakout
    [entry] = run(strategy, "BTC-USD", [bar(3, "10", "12", "11.5")])
    assert (entry.candle_start, entry.action) == (3 * GRANULARITY, ENTRY)
    assert run(strategy, "BTC-USD", [bar(4, "9", "12", "9")]) == []  # 9 equals the prior low
    [exit_] = run(strategy, "BTC-USD", [bar(5, "8", "10", "8.5")])
    assert (exit_.candle_start, exit_.action) == (5 * GRANULARITY, EXIT)


def test_contradictory_params_are_refused() -> None:
    with pytest.raises(ValueError, match="fast_period"):
        make(EmaCross, ["BTC-USD"], fast_period=26, slow_period=26)
    with pytest.raises(ValueError, match="oversold"):
        make(MeanReversion, ["BTC-USD"], oversold=Decimal(70), overbought=Decimal(70))


# --- building from config ---

KINDS = {
    StrategyKind.EMA_CROSS: EmaCross,
    StrategyKind.MEAN_REVERSION: MeanReversion,
    StrategyKind.BREAKOUT: Breakout,
}


def test_build_strategies_from_the_shipped_config() -> None:
    config = load_config(CONFIG_DIR).strategies
    entries = [entry for entry in config.strategies if entry.enabled]
    built = build_strategies(config)
    assert {type(strategy) for strategy in built} == set(KINDS.values())
    assert [type(strategy) for strategy in built] == [KINDS[entry.kind] for entry in entries]
    candles = random_walk(2)
    for strategy, entry in zip(built, entries, strict=True):
        assert (strategy.name, strategy.products) == (entry.name, tuple(entry.products))
        assert strategy.granularity_s == entry.granularity_s
        assert strategy.quote_size == entry.quote_size_usd
        by_hand = KINDS[entry.kind](
            entry.name, entry.products, entry.granularity_s, entry.quote_size_usd,
            **entry.params.model_dump(),
        )  # fmt: skip
        product_id = entry.products[0]
        signals = run(strategy, product_id, candles)
        assert signals and signals == run(by_hand, product_id, candles)


def config_of(*entries: dict[str, Any]) -> StrategiesConfig:
    return StrategiesConfig.model_validate({"strategies": list(entries)})


EMA_ENTRY = {
    "name": "trend", "kind": "ema_cross", "products": ["BTC-USD"], "quote_size_usd": 50,
    "params": {"fast_period": 5, "slow_period": 13},
}  # fmt: skip
REVERSION_ENTRY = {
    "name": "reversion", "kind": "mean_reversion", "products": ["ETH-USD"], "quote_size_usd": 60,
}  # fmt: skip
BREAKOUT_ENTRY = {
    "name": "breakout", "kind": "breakout", "products": ["SOL-USD"], "granularity_s": 3600,
    "quote_size_usd": 70, "params": {"reward_risk_ratio": 3},
}  # fmt: skip


def test_build_strategies_skips_a_disabled_strategy() -> None:
    built = build_strategies(
        config_of({**EMA_ENTRY, "enabled": False}, REVERSION_ENTRY, BREAKOUT_ENTRY)
    )
    assert [(type(s), s.name) for s in built] == [
        (MeanReversion, "reversion"),
        (Breakout, "breakout"),
    ]
    assert [s.quote_size for s in built] == [Decimal(60), Decimal(70)]
    assert build_strategies(config_of()) == []


def test_reward_risk_ratio_from_config_sets_the_take_profit() -> None:
    [strategy] = build_strategies(config_of(BREAKOUT_ENTRY))
    entries = [s for s in run(strategy, "SOL-USD", random_walk(3)) if s.action is ENTRY]
    assert entries
    for signal in entries:
        assert signal.stop_loss is not None and signal.take_profit is not None
        risk = signal.reference_price - signal.stop_loss
        reward = signal.take_profit - signal.reference_price
        assert math.isclose(reward / risk, 3, rel_tol=1e-5)


# --- the engine ---


def test_engine_routes_by_product_and_granularity() -> None:
    trend = make(EmaCross, ["BTC-USD"])
    breakout = Breakout("hourly", ["BTC-USD", "ETH-USD"], 3600, QUOTE)
    engine = SignalEngine([trend, breakout])
    assert engine.routes() == [("BTC-USD", 300), ("BTC-USD", 3600), ("ETH-USD", 3600)]
    candles = random_walk(3)
    assert engine.on_candle("SOL-USD", 300, candles[0]) == []
    assert engine.on_candle("ETH-USD", 300, candles[0]) == []
    five_minute = [s for c in candles for s in engine.on_candle("BTC-USD", 300, c)]
    assert five_minute and five_minute == run(make(EmaCross, ["BTC-USD"]), "BTC-USD", candles)
    # The hourly strategy saw none of the five-minute candles: it starts from scratch.
    hourly = [s for c in candles for s in engine.on_candle("BTC-USD", 3600, c)]
    fresh = Breakout("hourly", ["BTC-USD", "ETH-USD"], 3600, QUOTE)
    assert hourly and hourly == run(fresh, "BTC-USD", candles)
    assert engine.stale_candles == 0


def test_engine_ignores_older_candles_and_repeats_the_newest() -> None:
    candles = random_walk(5)
    engine = SignalEngine([make(EmaCross, ["BTC-USD"])])
    got: list[Signal] = []
    for index, candle in enumerate(candles):
        signals = engine.on_candle("BTC-USD", GRANULARITY, candle)
        assert engine.on_candle("BTC-USD", GRANULARITY, candle) == signals
        if index:
            assert engine.on_candle("BTC-USD", GRANULARITY, candles[index - 1]) == []
        got.extend(signals)
    assert engine.stale_candles == len(candles) - 1
    assert len(got) >= 4 and got == run(make(EmaCross, ["BTC-USD"]), "BTC-USD", candles)
