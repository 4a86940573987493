"""Measuring and fitting slippage: known parameters come back out of noisy, dirty fills.

The synthetic fills are drawn from the model itself with known parameters (tier 1: base
12 bps, impact 7 bps; tier 2: base 30, impact 15), normal noise of 1.5 bps and, every
25th order, a gross outlier 80 to 200 bps worse, all from a fixed seed.

Tolerance: each parameter within 1 bp of the truth. With 400 orders a tier (320 fitted
on) and the noise above, each estimate's standard error is about 0.15 bps and Huber's
leftover bias from the one-sided outliers about 0.2 bps, so 1 bp leaves room for the
seed's luck; while plain least squares, pulled by the outliers, misses the base by
several bps, which a test checks so that the tolerance means something.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from services.calibrate.cli import parse_since
from services.calibrate.export import CalibrationRun, calibration_document, write_calibration
from services.calibrate.fit import (
    MIN_TAKER_ORDERS,
    Skipped,
    TierFit,
    calibrate,
    fit_tier,
    huber_fit,
    split_held_out,
)
from services.calibrate.measure import FillRecord, combine_fills, size_bucket, slippage_bps
from services.calibrate.pnl import realized_pnl
from shared.messages import Liquidity, TradingMode
from shared.money import Side
from shared.slippage import DEFAULT_TIERS, CostModel, TierCosts, load_calibration

AT = datetime(2026, 6, 1, tzinfo=UTC)
TOLERANCE_BPS = Decimal(1)
TRUE = {
    1: TierCosts(Decimal(12), Decimal(7), Decimal(50_000)),
    2: TierCosts(Decimal(30), Decimal(15), Decimal(10_000)),
}
PRODUCTS = {"BTC-USD": 1, "AVAX-USD": 2, "UNI-USD": 3}
MIDS = {"BTC-USD": Decimal("60000"), "AVAX-USD": Decimal("35"), "UNI-USD": Decimal("8")}
# The configured model is the defaults (tier 1: 10 + 5, tier 2: 25 + 10): wrong on purpose.
CONFIGURED = CostModel(dict(DEFAULT_TIERS))


def _fill(
    coid: str, product: str, side: Side, bps: float, notional: Decimal, at: datetime,
    liquidity: Liquidity = Liquidity.TAKER,
) -> FillRecord:  # fmt: skip
    mid = MIDS[product]
    offset = mid * Decimal(repr(round(bps, 6))) / 10_000
    price = mid + offset if side is Side.BUY else mid - offset
    return FillRecord(coid, product, side, liquidity, price, notional / mid, Decimal(0), mid, at)


def _orders(product: str, truth: TierCosts, count: int, seed: int) -> list[FillRecord]:
    """``count`` taker orders of 0.01x to 4x the typical size, noisy, every 25th wild."""
    rng = random.Random(seed)
    fills = []
    for i in range(count):
        ratio = 10 ** rng.uniform(-2, 0.6)
        bps = float(truth.base_slippage_bps) + float(truth.impact_coefficient_bps) * ratio**0.5
        bps += rng.gauss(0, 1.5) + (rng.uniform(80, 200) if i % 25 == 7 else 0)
        notional = truth.typical_notional * Decimal(repr(round(ratio, 8)))
        side = Side.BUY if i % 2 else Side.SELL
        fills.append(
            _fill(f"{product}-{i}", product, side, bps, notional, AT + timedelta(minutes=i))
        )
    return fills


def _synthetic() -> list[FillRecord]:
    return _orders("BTC-USD", TRUE[1], 400, seed=1) + _orders("AVAX-USD", TRUE[2], 400, seed=2)


def test_the_fit_recovers_known_parameters_despite_noise_and_outliers() -> None:
    executions, _ = combine_fills(_synthetic(), PRODUCTS)
    outcome = calibrate(executions, CONFIGURED)
    fitted = {fit.tier: fit.costs for fit in outcome.fits}
    assert sorted(fitted) == [1, 2]
    for tier, truth in TRUE.items():
        assert abs(fitted[tier].base_slippage_bps - truth.base_slippage_bps) <= TOLERANCE_BPS
        assert abs(fitted[tier].impact_coefficient_bps - truth.impact_coefficient_bps) <= (
            TOLERANCE_BPS
        )
        assert fitted[tier].typical_notional == truth.typical_notional  # from config, not fitted
    assert [skipped.tier for skipped in outcome.skipped] == [3]


def test_plain_least_squares_would_miss_by_more_than_the_tolerance() -> None:
    """The outliers are gross enough that robustness is what keeps the fit inside 1 bp."""
    executions, _ = combine_fills(_orders("BTC-USD", TRUE[1], 400, seed=1), PRODUCTS)
    scale = np.array([float((e.notional / Decimal(50_000)).sqrt()) for e in executions])
    observed = np.array([float(e.slippage_bps) for e in executions])
    ols = np.linalg.lstsq(np.column_stack([np.ones_like(scale), scale]), observed, rcond=None)[0]
    assert abs(ols[0] - 12) > 3 * float(TOLERANCE_BPS)
    base, impact = huber_fit(scale, observed)
    assert abs(base - 12) <= float(TOLERANCE_BPS) and abs(impact - 7) <= float(TOLERANCE_BPS)


def test_held_out_error_falls_when_the_configured_parameters_are_wrong() -> None:
    executions, _ = combine_fills(_synthetic(), PRODUCTS)
    for fit in calibrate(executions, CONFIGURED).fits:
        assert fit.held_out == 80 and fit.sample_size == 320
        assert fit.fit_error_bps < fit.config_error_bps, fit


def test_a_tier_with_too_few_taker_orders_is_refused_and_says_how_many_it_needs() -> None:
    executions, _ = combine_fills(_orders("BTC-USD", TRUE[1], 200, seed=3), PRODUCTS)
    too_few = fit_tier(1, executions[: MIN_TAKER_ORDERS - 1], TRUE[1])
    assert isinstance(too_few, Skipped)
    assert "29 taker orders, at least 30 needed" in too_few.reason
    assert isinstance(fit_tier(1, executions[:MIN_TAKER_ORDERS], TRUE[1]), TierFit)


def test_orders_all_of_one_size_cannot_separate_base_from_impact() -> None:
    fills = [_fill(f"c{i}", "BTC-USD", Side.BUY, 12 + i % 3, Decimal(1000), AT + timedelta(i))
             for i in range(40)]  # fmt: skip
    executions, _ = combine_fills(fills, PRODUCTS)
    refused = fit_tier(1, executions, TRUE[1])
    assert isinstance(refused, Skipped)
    assert "one size bucket (0.01-0.03x" in refused.reason and "at least 2" in refused.reason


def test_maker_fills_are_measured_but_never_fitted() -> None:
    makers = [_fill(f"m{i}", "AVAX-USD", Side.BUY, -5.0, Decimal(100 * (i + 1)),
                    AT + timedelta(i), Liquidity.MAKER) for i in range(60)]  # fmt: skip
    executions, _ = combine_fills(_orders("BTC-USD", TRUE[1], 100, seed=4) + makers, PRODUCTS)
    outcome = calibrate(executions, CONFIGURED)
    assert [fit.tier for fit in outcome.fits] == [1]
    assert "tier 2: 0 taker orders" in outcome.skipped[0].reason


def test_slippage_is_positive_when_the_fill_is_worse_than_the_mid() -> None:
    mid = Decimal(100)
    assert slippage_bps(Side.BUY, Decimal("100.10"), mid) == Decimal(10)
    assert slippage_bps(Side.SELL, Decimal("99.90"), mid) == Decimal(10)
    assert slippage_bps(Side.SELL, Decimal("100.10"), mid) == Decimal(-10)


def test_an_orders_fills_combine_into_one_execution_at_their_average_price() -> None:
    at = AT
    fills = [
        FillRecord("c1", "BTC-USD", Side.BUY, Liquidity.TAKER, Decimal("60006"), Decimal("1"),
                   Decimal("1"), Decimal("60000"), at + timedelta(seconds=1)),
        FillRecord("c1", "BTC-USD", Side.BUY, Liquidity.TAKER, Decimal("60018"), Decimal("3"),
                   Decimal("2"), Decimal("60000"), at),
        FillRecord("c2", "DOGE-USD", Side.BUY, Liquidity.TAKER, Decimal("1"), Decimal("1"),
                   Decimal("0"), Decimal("1"), at),
    ]  # fmt: skip
    executions, unknown = combine_fills(fills, PRODUCTS)
    assert unknown == {"DOGE-USD"}
    [execution] = executions
    assert (execution.size, execution.average_price, execution.fee) == (4, 60015, 3)
    assert (execution.notional, execution.fills, execution.filled_at) == (240_000, 2, at)
    assert execution.slippage_bps == Decimal("2.5")


def test_size_buckets_are_half_decades_of_the_typical_order() -> None:
    typical = Decimal(10_000)
    assert size_bucket(Decimal(5), typical) == "<0.001x"
    assert size_bucket(Decimal(1_000), typical) == "0.1-0.3x"
    assert size_bucket(Decimal(10_000), typical) == "1-3x"
    assert size_bucket(Decimal(500_000), typical) == ">=30x"


def test_every_fifth_order_by_time_is_held_out() -> None:
    executions, _ = combine_fills(_orders("BTC-USD", TRUE[1], 12, seed=5), PRODUCTS)
    training, held_out = split_held_out(list(reversed(executions)))
    assert [e.client_order_id for e in held_out] == ["BTC-USD-4", "BTC-USD-9"]
    assert len(training) == 10


def test_a_fit_that_wants_a_negative_base_holds_it_at_zero() -> None:
    scale = np.linspace(0.1, 2.0, 50)
    base, impact = huber_fit(scale, -2.0 + 6.0 * scale)
    assert base == 0.0 and impact > 0
    TierCosts(Decimal(repr(base)), Decimal(repr(impact)), Decimal(1))  # accepted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2026-05-01T09:00:00+09:00", datetime(2026, 5, 1, 0, 0, tzinfo=UTC)),
        ("2026-05-01T00:00:00Z", datetime(2026, 5, 1, tzinfo=UTC)),
    ],
)
def test_since_accepts_durations_and_times_with_an_offset(text, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["0h", "yesterday", "2026-05-01T00:00:00", "-3d", "5y"])
def test_since_refuses_anything_else_clearly(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="duration"):
        parse_since(text)


def test_the_export_is_what_load_calibration_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    executions, _ = combine_fills(_synthetic(), PRODUCTS)
    fits = calibrate(executions, CONFIGURED).fits
    run = CalibrationRun(AT, TradingMode.LIVE, AT - timedelta(days=7), AT, fits)
    path = tmp_path / "nested" / "slippage.json"
    write_calibration(path, run)
    assert load_calibration(path) == {fit.tier: fit.costs for fit in fits}
    document = json.loads(path.read_text())
    assert document == calibration_document(run)
    assert document["mode"] == "LIVE" and document["window"]["end"] == AT.isoformat()
    assert document["tiers"]["1"]["sample_size"] == 320
    assert isinstance(document["tiers"]["1"]["base_slippage_bps"], str)


def _pnl_fill(side: Side, price: str, size: str, fee: str) -> FillRecord:
    return FillRecord("c", "ETH-USD", side, Liquidity.TAKER, Decimal(price), Decimal(size),
                      Decimal(fee), Decimal(price), AT)  # fmt: skip


def test_realized_pnl_is_at_average_cost_with_fees_included() -> None:
    [eth] = realized_pnl([
        _pnl_fill(Side.BUY, "100", "1", "1"), _pnl_fill(Side.BUY, "110", "1", "1"),
        _pnl_fill(Side.SELL, "120", "1", "1"),  # cost 106 each: 120 - 1 - 106 = 13
        _pnl_fill(Side.SELL, "100", "2", "2"),  # 1 matched: 100 - 1 - 106 = -7; 1 unmatched
    ])  # fmt: skip
    assert (eth.realized, eth.position, eth.cost) == (Decimal("6.00"), 0, Decimal("0.00"))
    assert (eth.bought, eth.sold, eth.unmatched_sold) == (2, 3, 1)
