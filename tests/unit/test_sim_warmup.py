"""A replay's warm-up candles: served as history before the start, not replayed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.exchange_sim.app import ExchangeSimSettings, build_venue
from services.exchange_sim.candles import Granularity
from shared.candle_files import Candle, write_candles

START = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)


def _replay(directory: Path, closes: list[int]) -> Path:
    candles = [
        Candle(1_767_225_600 + 60 * i, Decimal(c - 1), Decimal(c + 1), Decimal(c), Decimal(c),
               Decimal(5))
        for i, c in enumerate(closes)
    ]  # fmt: skip
    write_candles(directory / "BTC-USD.csv", candles)
    return directory


def test_the_first_candles_are_history_ending_before_the_start(tmp_path: Path) -> None:
    closes = [60_000 + 10 * i for i in range(14)]
    settings = ExchangeSimSettings(
        sim_products="BTC-USD", sim_replay_dir=_replay(tmp_path, closes),
        sim_replay_warmup_candles=10,
    )  # fmt: skip
    venue = build_venue(settings, START)
    bucket = int(START.timestamp()) // 60 * 60
    served = venue.candles["BTC-USD"].candles(bucket - 3600, bucket, Granularity.ONE_MINUTE)
    history = sorted(served, key=lambda c: c.start)
    assert [c.close for c in history] == [Decimal(c) for c in closes[:10]]
    assert [c.start for c in history] == [bucket - 60 * (10 - i) for i in range(10)]
    # the market goes on from the first candle after the warm-up, not from the first
    bid, ask = venue.books["BTC-USD"].best_bid(), venue.books["BTC-USD"].best_ask()
    assert bid is not None and ask is not None
    assert abs((bid[0] + ask[0]) / 2 - closes[10]) < 50


def test_warm_up_needs_the_replay_at_wall_speed(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SIM_REPLAY_SPEED 1"):
        ExchangeSimSettings(sim_replay_dir=tmp_path, sim_replay_warmup_candles=5,
                            sim_replay_speed=60)  # fmt: skip
