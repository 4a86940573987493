"""exchange-sim candles: aggregation against a brute-force recomputation, and candle files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.exchange_sim.candles import Candle, CandleStore, Granularity
from shared.candle_files import load_candles, write_candles

T0 = datetime(2024, 3, 9, 22, 0, tzinfo=UTC)  # 1710021600, two hours before a UTC midnight
T0_SECONDS = 1710021600

PrintTuple = tuple[datetime, Decimal, Decimal]


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _brute_force(prints: list[PrintTuple], step: int) -> list[Candle]:
    """Candles straight from the prints, newest first, without going through minutes."""
    buckets: dict[int, list[PrintTuple]] = {}
    for moment, price, size in prints:
        second = int(moment.timestamp())
        buckets.setdefault(second - second % step, []).append((moment, price, size))
    result = []
    for start in sorted(buckets, reverse=True):
        members = buckets[start]
        prices = [price for _, price, _ in members]
        result.append(
            Candle(
                start=start,
                low=min(prices),
                high=max(prices),
                open=prices[0],
                close=prices[-1],
                volume=sum((size for _, _, size in members), Decimal(0)),
            )
        )
    return result


prints_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 86400 * 1000),  # milliseconds after T0
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2),
        st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("50"), places=8),
    ),
    min_size=1,
    max_size=60,
)


def _store_from(raw: list[tuple[int, Decimal, Decimal]]) -> tuple[CandleStore, list[PrintTuple]]:
    ordered = sorted(raw, key=lambda item: item[0])  # stable: equal times keep their order
    prints = [(_at(ms / 1000), price, size) for ms, price, size in ordered]
    store = CandleStore()
    for moment, price, size in prints:
        assert store.add_print(moment, price, size)
    return store, prints


@settings(max_examples=60, deadline=None)
@given(raw=prints_strategy)
def test_every_granularity_matches_a_brute_force_recomputation(raw):
    store, prints = _store_from(raw)
    everything = (T0_SECONDS - 2 * 86400, T0_SECONDS + 5 * 86400)
    for granularity in Granularity:
        got = store.candles(*everything, granularity)
        assert got == _brute_force(prints, granularity.seconds)
        starts = [candle.start for candle in got]
        assert starts == sorted(starts, reverse=True)
        assert all(start % granularity.seconds == 0 for start in starts)


@settings(max_examples=60, deadline=None)
@given(
    raw=prints_strategy,
    window=st.tuples(st.integers(min_value=-3600, max_value=3 * 86400), st.integers(0, 3 * 86400)),
    granularity=st.sampled_from(list(Granularity)),
    limit=st.none() | st.integers(min_value=0, max_value=5),
)
# A bucket that starts before `end` although none of its traded minutes does.
@example(
    raw=[(7_260_000, Decimal("0.01"), Decimal("1"))],
    window=(0, 7201),
    granularity=Granularity.FIVE_MINUTE,
    limit=None,
)
def test_a_window_keeps_the_buckets_starting_in_it_and_limit_keeps_the_newest(
    raw, window, granularity, limit
):
    store, prints = _store_from(raw)
    start, end = T0_SECONDS + window[0], T0_SECONDS + window[0] + window[1]
    expected = [c for c in _brute_force(prints, granularity.seconds) if start <= c.start < end]
    if limit is not None:
        expected = expected[:limit]
    assert store.candles(start, end, granularity, limit) == expected


def test_minute_candle_from_prints_and_coarser_buckets_align_to_utc_midnight():
    store = CandleStore()
    store.add_print(_at(7199), Decimal("100"), Decimal("1"))  # 23:59:59
    store.add_print(_at(7200), Decimal("101"), Decimal("2"))  # 00:00:00 the next day
    store.add_print(_at(7230), Decimal("99"), Decimal("3"))
    store.add_print(_at(7259), Decimal("100.5"), Decimal("0.5"))
    midnight = T0_SECONDS + 7200
    assert midnight % 86400 == 0
    assert store.candles(midnight, midnight + 60, Granularity.ONE_MINUTE) == [
        Candle(midnight, Decimal("99"), Decimal("101"), Decimal("101"), Decimal("100.5"),
               Decimal("5.5"))
    ]  # fmt: skip
    days = store.candles(0, 2 * 10**9, Granularity.ONE_DAY)
    assert [day.start for day in days] == [midnight, midnight - 86400]
    assert days[1].volume == Decimal("1") and days[0].open == Decimal("101")


def test_a_bucket_starting_before_end_is_whole_even_past_end():
    store = CandleStore()
    store.add_print(_at(0), Decimal("10"), Decimal("1"))
    store.add_print(_at(1800), Decimal("12"), Decimal("1"))
    hour = store.candles(T0_SECONDS, T0_SECONDS + 60, Granularity.ONE_HOUR)
    assert hour == [Candle(T0_SECONDS, Decimal("10"), Decimal("12"), Decimal("10"),
                           Decimal("12"), Decimal("2"))]  # fmt: skip
    assert store.candles(T0_SECONDS + 1, T0_SECONDS + 7200, Granularity.ONE_HOUR) == []


def test_latest_is_the_open_bucket_and_span_the_minutes_held():
    store = CandleStore()
    assert store.latest(Granularity.FIVE_MINUTE) is None and store.span() is None
    for second, price in ((0, "5"), (290, "7"), (301, "6"), (430, "8")):
        store.add_print(_at(second), Decimal(price), Decimal("1"))
    latest = store.latest(Granularity.FIVE_MINUTE)
    assert latest == Candle(T0_SECONDS + 300, Decimal("6"), Decimal("8"), Decimal("6"),
                            Decimal("8"), Decimal("2"))  # fmt: skip
    assert store.span() == (T0_SECONDS, T0_SECONDS + 420)


def test_a_late_print_updates_range_and_volume_of_a_held_minute_only():
    store = CandleStore()
    store.add_print(_at(10), Decimal("100"), Decimal("1"))
    store.add_print(_at(50), Decimal("101"), Decimal("1"))
    store.add_print(_at(130), Decimal("102"), Decimal("1"))
    assert store.add_print(_at(20), Decimal("90"), Decimal("2"))  # minute 0, late
    assert not store.add_print(_at(70), Decimal("95"), Decimal("2"))  # minute 1 never traded
    assert store.add_print(_at(125), Decimal("103"), Decimal("1"))  # back in the newest minute
    minutes = store.candles(T0_SECONDS, T0_SECONDS + 180, Granularity.ONE_MINUTE)
    assert minutes == [
        Candle(T0_SECONDS + 120, Decimal("102"), Decimal("103"), Decimal("102"), Decimal("103"),
               Decimal("2")),
        Candle(T0_SECONDS, Decimal("90"), Decimal("101"), Decimal("100"), Decimal("101"),
               Decimal("4")),
    ]  # fmt: skip


def test_memory_bound_drops_the_oldest_minutes():
    store = CandleStore(max_minutes=3)
    for minute in range(5):
        store.add_print(_at(60 * minute), Decimal(100 + minute), Decimal("1"))
    assert len(store) == 3
    assert store.span() == (T0_SECONDS + 120, T0_SECONDS + 240)
    assert not store.add_print(_at(0), Decimal("1"), Decimal("1"))  # its minute is gone


def test_extend_loads_history_and_rejects_unaligned_starts():
    store = CandleStore()
    one = Decimal("1")
    store.extend([Candle(T0_SECONDS + 60, one, one, one, one, one),
                  Candle(T0_SECONDS, one, one, one, one, one)])  # fmt: skip
    store.add_print(_at(125), Decimal("2"), Decimal("3"))
    assert store.span() == (T0_SECONDS, T0_SECONDS + 120)
    five = store.candles(T0_SECONDS, T0_SECONDS + 300, Granularity.FIVE_MINUTE)
    assert five == [Candle(T0_SECONDS, one, Decimal("2"), one, Decimal("2"), Decimal("5"))]
    with pytest.raises(ValueError, match="minute boundary"):
        store.extend([Candle(T0_SECONDS + 30, one, one, one, one, one)])


def test_granularity_seconds():
    assert [g.seconds for g in Granularity] == [60, 300, 900, 1800, 3600, 7200, 21600, 86400]


# --- candle files ---------------------------------------------------------------------

SAMPLE = [
    Candle(1700000060, Decimal("0.00000001"), Decimal("37000.125"), Decimal("36999.10"),
           Decimal("37000"), Decimal("12.345678901234567890")),
    Candle(1700000000, Decimal("36990.00"), Decimal("37010.50"), Decimal("36995.25"),
           Decimal("37001.00"), Decimal("0")),
]  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_every_digit(tmp_path: Path, suffix: str):
    path = tmp_path / f"btc{suffix}"
    assert write_candles(path, SAMPLE) == 2
    loaded = load_candles(path)
    assert loaded == sorted(SAMPLE, key=lambda c: c.start)
    for got, want in zip(loaded, sorted(SAMPLE, key=lambda c: c.start), strict=True):
        for name in ("low", "high", "open", "close", "volume"):
            assert getattr(got, name).as_tuple() == getattr(want, name).as_tuple()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_csv_is_ascending_with_the_documented_header(tmp_path: Path):
    path = tmp_path / "c.csv"
    write_candles(path, SAMPLE)
    lines = path.read_text().splitlines()
    assert lines[0] == "start,low,high,open,close,volume"
    assert lines[1] == "1700000000,36990.00,37010.50,36995.25,37001.00,0"
    assert lines[2].startswith("1700000060,0.00000001,")


def test_csv_accepts_iso_starts(tmp_path: Path):
    path = tmp_path / "iso.csv"
    path.write_text(
        "start,low,high,open,close,volume\n"
        "2023-11-14T22:14:20Z,1,2,1,2,3\n"
        "2023-11-14T23:13:20+01:00,1,2,2,1,3\n"
    )
    assert [c.start for c in load_candles(path)] == [1700000000, 1700000060]


def test_parquet_float_columns_read_through_their_shortest_repr(tmp_path: Path):
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    path = tmp_path / "f.parquet"
    table = pa.table(
        {"start": [60], "low": [0.1], "high": [0.3], "open": [0.2], "close": [0.2],
         "volume": [1.5]}
    )  # fmt: skip
    pq.write_table(table, path)
    (candle,) = load_candles(path)
    assert (candle.low, candle.high, candle.volume) == (Decimal("0.1"), Decimal("0.3"),
                                                        Decimal("1.5"))  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("60,1,2,1,2,1\n120,1,2,x,2,1\n", r"line 3: .*open"),
        ("60,1,2,1,2,1\n60,1,2,1,2,1\n", r"line 3: duplicate start 60 \(first at line 2\)"),
        ("60,1,2,1,2,\n", r"line 2: volume is missing"),
        ("60,3,2,1,2,1\n", r"line 2: need 0 < low"),
        ("60,1,2,1,2,-1\n", r"line 2: volume -1 is negative"),
        ("2023-11-14T22:14:20,1,2,1,2,1\n", r"line 2: .*no UTC offset"),
        ("soon,1,2,1,2,1\n", r"line 2: start 'soon'"),
    ],
)
def test_bad_csv_rows_name_their_line(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.csv"
    path.write_text("start,low,high,open,close,volume\n" + body)
    with pytest.raises(ValueError, match=message):
        load_candles(path)


def test_bad_parquet_rows_name_their_row(tmp_path: Path):
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    path = tmp_path / "dup.parquet"
    prices = ["1", "1", "1"]
    table = pa.table({"start": [60, 120, 60], "low": prices, "high": prices, "open": prices,
                      "close": prices, "volume": prices})  # fmt: skip
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=r"row 3: duplicate start 60 \(first at row 1\)"):
        load_candles(path)


def test_missing_columns_unknown_suffix_and_duplicate_writes_are_refused(tmp_path: Path):
    path = tmp_path / "short.csv"
    path.write_text("start,low,high\n60,1,2\n")
    with pytest.raises(ValueError, match="missing column.*open, close, volume"):
        load_candles(path)
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        write_candles(tmp_path / "c.json", SAMPLE)
    with pytest.raises(ValueError, match="duplicate candle start 1700000000"):
        write_candles(tmp_path / "d.csv", [SAMPLE[1], SAMPLE[1]])
    assert not (tmp_path / "d.csv").exists()
