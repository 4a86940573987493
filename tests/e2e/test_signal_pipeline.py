"""exchange-sim -> market-data -> signal over real Redis, with both services killed mid-stream.

market-data and signal run as real processes on the same scaled clock as the in-process
exchange-sim (two minutes of market per wall second). The proposals signal published
must equal the strategies run directly over the candles market-data published, in
order; those candles must be exactly the venue's, each bucket once.
"""

from __future__ import annotations

import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.signal.engine import SignalEngine
from services.signal.proposals import actionable
from services.signal.rebuild import candle_of
from services.signal.strategies import build_strategies
from shared.bus import ENVELOPE_FIELD, BusKeys
from shared.clock import ScaledClock
from shared.config import load_config
from shared.messages import CandleClosed, TradeProposed, decode
from tests.e2e.process import ServiceProcess
from tests.support.market import assert_candles_are_the_venues, published_candles
from tests.support.polling import eventually
from tests.support.venue import CONFIG_DIR, rate_limiter_service, running_sim

pytestmark = pytest.mark.timeout(240)

SPEED = 120.0
MAX_LAG_S = 30.0
STRATEGIES = {
    "strategies": [
        {"name": "fast_trend", "kind": "ema_cross", "products": ["BTC-USD", "ETH-USD"],
         "granularity_s": 60, "quote_size_usd": 100,
         "params": {"fast_period": 2, "slow_period": 5, "atr_period": 5,
                    "atr_stop_multiple": 2}},
        {"name": "fast_reversion", "kind": "mean_reversion", "products": ["BTC-USD", "ETH-USD"],
         "granularity_s": 60, "quote_size_usd": 75,
         "params": {"rsi_period": 4, "oversold": 45, "overbought": 55, "bollinger_period": 8,
                    "bollinger_stddev": 0.5}},
        {"name": "fast_breakout", "kind": "breakout", "products": ["BTC-USD", "ETH-USD"],
         "granularity_s": 300, "quote_size_usd": 150,
         "params": {"donchian_period": 5, "atr_period": 5, "atr_stop_multiple": 2}},
    ]
}  # fmt: skip


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    (target / "strategies.yaml").write_text(yaml.safe_dump(STRATEGIES))
    return target


async def _expected_proposals(redis: Any, keys: BusKeys, config_dir: Path) -> list[tuple]:
    """The strategies run directly over md.candles, with signal's rule for history candles."""
    engine = SignalEngine(build_strategies(load_config(config_dir).strategies))
    expected = []
    for _entry, envelope, candle in await published_candles(redis, keys):
        signals = engine.on_candle(candle.product_id, candle.granularity_s, candle_of(candle))
        if actionable(candle, envelope.origin_ts, MAX_LAG_S):
            expected += [
                (s.signal_id, s.side, s.action, s.quote_size, s.stop_loss, s.take_profit)
                for s in signals
            ]
    return expected


async def _published_proposals(redis: Any, keys: BusKeys) -> list[tuple]:
    published = []
    for _entry, fields in await redis.xrange(keys.stream(TradeProposed.STREAM)):
        envelope = decode(fields[ENVELOPE_FIELD.encode()])
        p = envelope.data
        assert isinstance(p, TradeProposed)
        assert envelope.id == p.proposal_id and p.reference_mid > 0
        published.append(
            (p.proposal_id, p.side, p.action, p.quote_size, p.stop_loss, p.take_profit)
        )
    return published


async def _signal_caught_up(redis: Any, keys: BusKeys) -> bool:
    stream = keys.stream(CandleClosed.STREAM)
    groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
    group = groups.get("signal")
    return bool(group) and group["lag"] == 0 and group["pending"] == 0


async def test_killing_and_restarting_either_service_loses_no_candle_and_repeats_no_proposal(
    redis_url: str, redis: Any, bus_keys: BusKeys, config_dir: Path, processes: list
) -> None:
    origin = datetime.now(UTC).replace(microsecond=0)
    clock = ScaledClock(origin, SPEED)
    common = {
        "REDIS_URL": redis_url, "BUS_PREFIX": bus_keys.prefix, "CONFIG_DIR": str(config_dir),
        "CLOCK_SPEED": str(SPEED), "CLOCK_ORIGIN": origin.isoformat(), "LOG_LEVEL": "INFO",
    }  # fmt: skip
    async with (
        running_sim(clock=clock, sim_history_minutes=600, sim_step_ms=20) as sim,
        rate_limiter_service(redis_url, bus_keys.prefix) as limiter_url,
    ):
        md_env = {
            **common, "MD_SOURCE": "sim", "EXCHANGE_SIM_URL": sim.base_url,
            "RATE_LIMITER_URL": limiter_url, "MD_CLOSE_DELAY_S": "10",
            "MD_CANDLE_POLL_MS": "20", "MD_BACKFILL_CANDLES": "40", "MD_STALE_AFTER_S": "5",
        }  # fmt: skip
        signal_env = {**common, "SIGNAL_MAX_CANDLE_LAG_S": str(MAX_LAG_S)}

        def start(module: str, env: dict[str, str]) -> ServiceProcess:
            process = ServiceProcess(module, env).start()
            processes.append(process)
            return process

        candle_stream = bus_keys.stream(CandleClosed.STREAM)

        async def run_for_live_candles(count: int) -> None:
            target = await redis.xlen(candle_stream) + count
            await eventually(lambda: _at_least(redis.xlen(candle_stream), target),
                             within=60, what=f"{count} more candles")  # fmt: skip

        market_data = start("services.market_data", md_env)
        signals = start("services.signal", signal_env)
        await market_data.wait_ready(within=60)
        await signals.wait_ready(within=60)
        await run_for_live_candles(16)

        signals.signal(signal.SIGKILL)
        signals.wait_exit()
        await run_for_live_candles(8)  # candles pile up while signal is down
        signals = start("services.signal", signal_env)
        await signals.wait_ready(within=60)
        await run_for_live_candles(12)

        market_data.signal(signal.SIGKILL)
        market_data.wait_exit()
        market_data = start("services.market_data", md_env)  # catches up from REST
        await market_data.wait_ready(within=60)
        await run_for_live_candles(16)

        signals.signal(signal.SIGKILL)  # and once more, right after the catch-up
        signals.wait_exit()
        signals = start("services.signal", signal_env)
        await signals.wait_ready(within=60)
        await run_for_live_candles(12)

        market_data.signal(signal.SIGTERM)
        assert market_data.wait_exit() == 0
        await eventually(lambda: _signal_caught_up(redis, bus_keys), within=30,
                         what="signal handled every candle")  # fmt: skip
        candles = await assert_candles_are_the_venues(sim, redis, bus_keys)

    expected = await _expected_proposals(redis, bus_keys, config_dir)
    published = await _published_proposals(redis, bus_keys)
    assert len({p[0] for p in published}) == len(published), "a proposal was published twice"
    assert published == expected
    # The market is random: about 70 live candles give 8 to 32 proposals, 20 on average.
    assert len(published) >= 4, f"too few proposals ({len(published)}) over {candles} candles"
    assert {p[2].value for p in published} == {"ENTRY", "EXIT"}


async def _at_least(count: Any, target: int) -> bool:
    return bool(await count >= target)
