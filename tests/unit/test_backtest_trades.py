"""The backtest over recorded trade prints: the file reader, candles built from prints as
market-data builds them, fills and stops at prints, prints and candles in one run."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml

from services.backtest.__main__ import main
from services.backtest.engine import Backtest, BacktestOptions
from services.backtest.run import BacktestSpec, RunOutput, run_backtest
from services.market_data.candles import CandleBuilder
from services.risk.engine import Effects
from shared.candle_files import Candle, candle_path, write_candles
from shared.coinbase.ws_messages import Trade
from shared.config import load_config
from shared.messages import OrderFilled
from shared.money import Side
from shared.slippage import CostModel
from shared.trade_files import TradePrint, iter_trades, write_trades

D = Decimal
START = 1_767_225_600  # 2026-01-01T00:00:00Z
CONFIG = Path("config")
FREE = CostModel().without_fees().without_slippage()
# Down, then a turn up (fast over slow: entry), then down again (exit).
CLOSES = [100, 99, 98, 97, 96, 95, 97, 100, 104, 108, 107, 103, 99, 95, 94, 93]
HEADER = "time,price,size,side,trade_id\n"


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- the file -----------------------------------------------------------------------------


def test_a_trades_file_reads_every_time_form_in_order(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USD.csv"
    path.write_text(
        HEADER
        + "1767225600,100.5,0.1,BUY,1\n"
        + "1767225600,100.4,0.2,sell,2\n"  # the same instant again: kept, in file order
        + "\n"
        + "1767225600.250000999,100.6,1,,3\n"  # beyond the microsecond: dropped
        + "2026-01-01T01:00:01.5+01:00,100.7,2,SELL,4\n"
        + "2026-01-01T00:00:02.000000999Z,100.8,3,BUY,5\n"
    )
    assert list(iter_trades(path)) == [
        TradePrint(at(START), D("100.5"), D("0.1"), Side.BUY, "1"),
        TradePrint(at(START), D("100.4"), D("0.2"), Side.SELL, "2"),
        TradePrint(at(START + 0.25), D("100.6"), D(1), None, "3"),
        TradePrint(at(START + 1.5), D("100.7"), D(2), Side.SELL, "4"),
        TradePrint(at(START + 2), D("100.8"), D(3), Side.BUY, "5"),
    ]
    bare = tmp_path / "ETH-USD.csv"
    bare.write_text("size,time,price\n2,1767225600.000001,3000\n")  # any column order
    assert list(iter_trades(bare)) == [TradePrint(at(START) + timedelta(microseconds=1),
                                                  D(3000), D(2))]  # fmt: skip


def test_parquet_columns_of_any_type_and_the_writer_round_trip(tmp_path: Path) -> None:
    typed = tmp_path / "typed.parquet"
    table = pa.table({
        "time": pa.array([at(START), at(START + 0.5)], type=pa.timestamp("us", tz="UTC")),
        "price": pa.array(["100.25", "100.5"]), "size": pa.array([0.1, 2.0]),
        "trade_id": pa.array([7, 8]),
    })  # fmt: skip
    pq.write_table(table, typed)
    assert list(iter_trades(typed)) == [
        TradePrint(at(START), D("100.25"), D("0.1"), None, "7"),
        TradePrint(at(START + 0.5), D("100.5"), D("2.0"), None, "8"),
    ]
    prints = [TradePrint(at(START + 0.123456), D("104000.00"), D("0.00000001"), Side.SELL, "9"),
              TradePrint(at(START + 60), D("1E+5"), D(3), None, "10")]  # fmt: skip
    for name in ("round.csv", "round.parquet"):
        assert write_trades(tmp_path / name, prints) == 2
        assert list(iter_trades(tmp_path / name)) == prints
    assert (tmp_path / "round.csv").read_text().splitlines()[1] == (
        "1767225600.123456,104000.00,0.00000001,SELL,9"
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("soon,100,1,BUY,1", "time 'soon' is neither UNIX seconds nor ISO-8601"),
        ("2026-01-01T00:00:00,100,1,BUY,1", "time 2026-01-01T00:00:00 has no UTC offset"),
        (",100,1,BUY,1", "time is missing"),
        ("1767225600,,1,BUY,1", "price is missing"),
        ("1767225600,abc,1,BUY,1", "price: not a decimal number: 'abc'"),
        ("1767225600,0,1,BUY,1", "price 0 is not positive"),
        ("1767225600,100,-2,BUY,1", "size -2 is not positive"),
        ("1767225600,100,NaN,BUY,1", "size: money must be finite"),
        ("1767225600,100,1,HOLD,1", "side 'HOLD' is neither BUY nor SELL"),
        ("1767225600,100,1,BUY", "trade_id is missing"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "BTC-USD.csv"
    path.write_text(HEADER + "1767225599,100,1,BUY,0\n" + row + "\n")
    prints = iter_trades(path)
    assert next(prints).trade_id == "0"  # streamed: the good row comes before the bad one
    with pytest.raises(ValueError) as error:
        next(prints)
    assert str(error.value).startswith(f"{path}: line 3: {message}")


def test_a_row_out_of_order_or_repeated_is_refused(tmp_path: Path) -> None:
    late = tmp_path / "late.csv"
    late.write_text(HEADER + "1767225601,100,1,BUY,1\n1767225600.5,100,1,BUY,2\n")
    with pytest.raises(ValueError, match=r"late.csv: line 3: time 2026-01-01T00:00:00.500000"
                                         r"\+00:00 is before .* ascending time order"):  # fmt: skip
        list(iter_trades(late))
    twice = tmp_path / "twice.csv"
    twice.write_text(HEADER + "1767225600,100,1,BUY,1\n1767225600,100,1,BUY,1\n")
    with pytest.raises(ValueError, match=r"twice.csv: line 3: trade_id '1' repeats \(line 2\)"):
        list(iter_trades(twice))
    missing = tmp_path / "missing.csv"
    missing.write_text("time,price\n1767225600,100\n")
    with pytest.raises(ValueError, match=r"missing.csv: missing column\(s\) size"):
        list(iter_trades(missing))
    with pytest.raises(ValueError, match="trade files are .csv or .parquet, not .txt"):
        list(iter_trades(tmp_path / "trades.txt"))


# --- the backtest -------------------------------------------------------------------------


def _strategy(name: str, product_id: str, granularity_s: int = 60) -> dict[str, object]:
    return {
        "name": name, "kind": "ema_cross", "products": [product_id],
        "granularity_s": granularity_s, "quote_size_usd": 100,
        "params": {"fast_period": 2, "slow_period": 3, "atr_period": 2,
                   "atr_stop_multiple": 20, "reward_risk_ratio": 20},
    }  # fmt: skip


def _config(tmp_path: Path, strategies: list[dict[str, object]], **risk: object) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["risk"].update({"stop_loss_pct": 50, "take_profit_pct": 500, **risk})
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    (target / "strategies.yaml").write_text(yaml.safe_dump({"strategies": strategies}))
    return target


def _candles(closes: Sequence[int], scale: int) -> list[Candle]:
    """One a minute: opening a quarter ``scale`` above the last close, a wick either side."""
    candles = []
    for index, close in enumerate(closes):
        open_ = (closes[index - 1] if index else close) * scale + scale // 4
        low, high = min(open_, close * scale) - scale // 2, max(open_, close * scale) + scale // 2
        candles.append(Candle(START + 60 * index, D(low), D(high), D(open_), D(close * scale),
                              D(5)))  # fmt: skip
    return candles


def _prints(candles: Sequence[Candle], delay_s: int = 0) -> list[TradePrint]:
    """Each candle's path as four prints, 15 s apart from ``delay_s`` after its start, sizes
    adding up to its volume."""
    return [
        TradePrint(at(candle.start + delay_s + 15 * step), price, D(size))
        for candle in candles
        for step, (price, size) in enumerate(zip(candle_path(candle), (1, 1, 1, 2), strict=True))
    ]


@dataclass
class Record:
    fills: list[OrderFilled] = field(default_factory=list)
    strategy_candles: list[tuple[str, int, Candle, datetime]] = field(default_factory=list)
    closes: list[tuple[str, int, datetime]] = field(default_factory=list)  # the equity samples
    bids: list[Decimal] = field(default_factory=list)  # the best bid of every quote risk took


def _run(spec: BacktestSpec) -> tuple[RunOutput, Record]:
    record = Record()

    def watch(backtest: Backtest) -> None:
        backtest.observers.fill.append(record.fills.append)
        backtest.observers.candle.append(
            lambda product_id, candle: record.closes.append(
                (product_id, candle.start, backtest.clock.now())
            )
        )
        on_candle = backtest.signal.on_candle

        def seen(product_id: str, granularity_s: int, candle: Candle):  # type: ignore[no-untyped-def]
            now = backtest.clock.now()
            record.strategy_candles.append((product_id, granularity_s, candle, now))
            return on_candle(product_id, granularity_s, candle)

        backtest.signal.on_candle = seen  # type: ignore[method-assign]
        on_tick = backtest.risk.on_tick

        def tick(product_id: str, bid: Decimal, *args: Any, **kwargs: Any) -> Effects:
            record.bids.append(bid)
            return on_tick(product_id, bid, *args, **kwargs)

        backtest.risk.on_tick = tick  # type: ignore[method-assign]

    return asyncio.run(run_backtest(spec, prepare=watch)), record


def _spec(
    config_dir: Path,
    names: list[str],
    *,
    trades: list[tuple[str, Path]],
    data: list[tuple[str, Path]] | None = None,
    end: datetime | None = None,
    trade_from: datetime | None = None,
) -> BacktestSpec:
    return BacktestSpec(
        config=load_config(config_dir), strategy_names=names, data=data or [], cost=FREE,
        options=BacktestOptions(latency=timedelta(0), trade_from=trade_from), end=end,
        trades=trades,
    )  # fmt: skip


def _builder_candles(prints: Sequence[TradePrint], granularity: int) -> list[Candle]:
    """What market-data's builder makes of ``prints``, every bucket closed."""
    builder = CandleBuilder(["BTC-USD"], [granularity], close_delay_s=0)
    route = ("BTC-USD", granularity)
    builder.start_at(route, START)
    builder.on_trades(
        Trade(trade_id=str(number), product_id="BTC-USD", price=p.price, size=p.size,
              side=Side.BUY, time=p.time)
        for number, p in enumerate(prints, 1)
    )  # fmt: skip
    closed = builder.closed(route, prints[-1].time + timedelta(seconds=granularity))
    return [bucket.candle for bucket in closed if bucket.candle is not None]


def test_candles_built_from_prints_are_market_datas_and_trades_fill_at_prints(
    tmp_path: Path,
) -> None:
    config_dir = _config(tmp_path, [_strategy("quick", "BTC-USD"),
                                    _strategy("slow", "BTC-USD", 300)])  # fmt: skip
    source = _candles(CLOSES, 1000)
    prints = [p for p in _prints(source) if p.time < at(START + 14 * 60)]  # a quiet minute,
    prints += [p for p in _prints(source) if p.time >= at(START + 15 * 60)]  # then one more
    write_trades(tmp_path / "BTC-USD.csv", prints)
    spec = _spec(config_dir, ["quick", "slow"], trades=[("BTC-USD", tmp_path / "BTC-USD.csv")])
    output, record = _run(spec)

    built = {g: [(c, now) for p, gran, c, now in record.strategy_candles if gran == g]
             for g in (60, 300)}  # fmt: skip
    assert [c for c, _ in built[60]] == source[:14] + source[15:]  # the quiet minute has none
    assert [c for c, _ in built[60]] == _builder_candles(prints, 60)
    assert [c for c, _ in built[300]] == _builder_candles(prints, 300)
    assert len(built[300]) == 4  # the last bucket, one minute in, closes at the data's end
    for granularity, candles in built.items():
        assert all(now == at(c.start + granularity) for c, now in candles)  # each at its end
    assert record.closes == [("BTC-USD", c.start, at(c.start + 60)) for c, _ in built[60]]
    assert output.candles == 15

    last_price = {p.time: p.price for p in prints}  # the last print at each moment
    assert [(f.side, f.price, f.filled_at) for f in record.fills] == [
        (Side.BUY, D(100_250), at(START + 8 * 60)),  # the cross up on the 100 close, filled
        (Side.SELL, D(103_250), at(START + 12 * 60)),  # at the print of the close's moment
    ]
    assert all(f.price == last_price[f.filled_at] == f.arrival_mid for f in record.fills)
    assert output.trades == 1


def test_a_stop_a_print_jumps_through_fires_at_that_print(tmp_path: Path) -> None:
    config_dir = _config(tmp_path, [_strategy("quick", "BTC-USD")], stop_loss_pct=3)
    prints = _prints(_candles(CLOSES, 1000))
    entry = START + 8 * 60  # bought at 100,250: the stop is 97,242.50
    gap = [
        TradePrint(at(entry + 15), D(101_000), D(1)),
        TradePrint(at(entry + 30), D(95_000), D(1)),
    ]
    prints = (
        [p for p in prints if p.time <= at(entry)]
        + gap
        + [p for p in prints if p.time > at(entry + 30)]
    )
    write_trades(tmp_path / "BTC-USD.csv", prints)
    _, record = _run(_spec(config_dir, ["quick"], trades=[("BTC-USD", tmp_path / "BTC-USD.csv")]))
    assert [(f.side, f.price, f.filled_at) for f in record.fills] == [
        (Side.BUY, D(100_250), at(entry)),
        (Side.SELL, D(95_000), at(entry + 30)),  # at the print, not at 97,242.50 on the way
    ]
    assert record.fills[1].intent_id.startswith("stop_loss:")
    assert D(95_000) in record.bids  # risk saw the print that crossed the stop ...
    assert set(record.bids) <= {p.price for p in prints}  # ... and no price that never printed


def test_a_candle_product_and_a_trades_product_run_in_time_order(tmp_path: Path) -> None:
    config_dir = _config(tmp_path, [_strategy("quick", "BTC-USD"), _strategy("eth", "ETH-USD")])
    write_trades(tmp_path / "BTC-USD.csv", _prints(_candles(CLOSES, 1000), delay_s=5))
    eth = _candles([100] * 3 + CLOSES[:-3], 30)  # the same turns, three minutes later
    write_candles(tmp_path / "ETH-USD.csv", eth)
    spec = _spec(config_dir, ["quick", "eth"], data=[("ETH-USD", tmp_path / "ETH-USD.csv")],
                 trades=[("BTC-USD", tmp_path / "BTC-USD.csv")])  # fmt: skip
    output, record = _run(spec)
    minutes = range(1, len(CLOSES) + 1)
    assert record.closes == [
        (product_id, START + 60 * (minute - 1), at(START + 60 * minute))
        for minute in minutes
        for product_id in ("ETH-USD", "BTC-USD")  # at one moment: --data, then --trades
    ]
    fills = [(f.product_id, f.side, f.price, f.filled_at) for f in record.fills]
    assert [(product_id, side, time) for product_id, side, _, time in fills] == [
        ("BTC-USD", Side.BUY, at(START + 8 * 60)),
        ("ETH-USD", Side.BUY, at(START + 10 * 60)),
        ("BTC-USD", Side.SELL, at(START + 12 * 60)),
        ("ETH-USD", Side.SELL, at(START + 15 * 60)),
    ]
    assert fills[0][2] == D(100_000)  # the last print, the close 10 s before the decision
    assert output.trades == 2
    alone = [  # each product by itself trades the same, so the merge changed only the order
        (f.product_id, f.side, f.price, f.filled_at)
        for part in (_spec(config_dir, ["eth"], data=list(spec.data), trades=[]),
                     _spec(config_dir, ["quick"], trades=list(spec.trades)))
        for f in _run(part)[1].fills
    ]  # fmt: skip
    assert fills == sorted(alone, key=lambda fill: fill[3])


def test_from_and_to_bound_the_prints(tmp_path: Path) -> None:
    config_dir = _config(tmp_path, [_strategy("quick", "BTC-USD")])
    write_trades(tmp_path / "BTC-USD.csv", _prints(_candles(CLOSES, 1000)))
    spec = _spec(config_dir, ["quick"], trades=[("BTC-USD", tmp_path / "BTC-USD.csv")],
                 end=at(START + 10 * 60), trade_from=at(START + 9 * 60))  # fmt: skip
    _, record = _run(spec)
    assert record.fills == []  # the entry was history, and the exit's minute is never read
    assert [start for _, start, _ in record.closes] == [START + 60 * m for m in range(10)]


def test_the_cli_takes_trades_files_and_refuses_a_product_given_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = _config(tmp_path, [_strategy("quick", "BTC-USD")])
    trades = tmp_path / "BTC-USD.csv"
    write_trades(trades, _prints(_candles(CLOSES, 1000)))
    candles = tmp_path / "candles.csv"
    write_candles(candles, _candles(CLOSES, 1000))
    out = tmp_path / "out"
    common = ["--strategy", "quick", "--config-dir", str(config_dir), "--out", str(out),
              "--no-progress", "--no-compare"]  # fmt: skip
    assert main([*common, "--trades", str(trades)]) == 0
    assert "quick on BTC-USD" in capsys.readouterr().out
    assert len((out / "trades.csv").read_text().splitlines()) == 2  # a header, one round trip
    assert main([*common, "--data", f"BTC-USD={candles}", "--trades", str(trades)]) == 2
    assert f"BTC-USD is given twice ({candles} and {trades})" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(common)
    assert exited.value.code == 2
    assert "one of the arguments --data --trades is required" in capsys.readouterr().err
