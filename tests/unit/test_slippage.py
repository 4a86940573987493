"""The cost model: its worked example to the cent, its fills and fees, and the book it shapes."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import load_config
from shared.config.models import ExecutionPolicy, UniverseConfig
from shared.matching.walk import walk_book
from shared.messages.payloads import Liquidity
from shared.money import Rounding, Side, quantize
from shared.slippage import (
    BookLevel,
    CostModel,
    TierCosts,
    break_even_win_rate,
    load_calibration,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
BPS = Decimal(10_000)
TICK = Decimal("0.01")
BASE_INCREMENT = Decimal("0.00000001")
# The book's notional boundaries in typical orders: 10^(i/2), i = -6..4 (0.001 to 100).
BOUNDARY_STEPS = [Decimal(10) ** (Decimal(i) / 2) for i in range(-6, 5)]
# Above the model at q, between two boundaries, in units of the impact at the upper
# boundary; derived in test_where_the_interpolation_bound_comes_from.
INTERPOLATION_BOUND = Decimal("0.1")


# --- the worked example ---------------------------------------------------------------


def test_the_worked_example_to_the_cent():
    # Tier 1: base 10 bps, impact 5 bps at a typical $50,000 order; taker 60 bps.
    # Entry: buy 1 BTC at a 50,000 mid, notional 50,000 = one typical order:
    #   slippage = 10 + 5 * sqrt(50,000 / 50,000) = 15 bps
    #   fill     = 50,000 * 1.0015 = 50,075.00 (already on the tick)
    #   fee      = 50,075.00 * 0.006 = 300.45
    # Exit: sell 1 BTC at a 52,000 mid:
    #   slippage = 10 + 5 * sqrt(1.04) = 10 + 5 * 1.0198039... = 15.0990195... bps
    #   fill     = 52,000 * (1 - 0.00150990195...) = 52,000 - 78.5149... = 51,921.4850...
    #            -> 51,921.48 (a sell rounds down)
    #   fee      = 51,921.48 * 0.006 = 311.52888 -> 311.53
    # gross = 52,000 - 50,000 = 2,000
    # net   = (51,921.48 - 50,075.00) - 300.45 - 311.53 = 1,846.48 - 611.98 = 1,234.50
    # costs = 2,000 - 1,234.50 = 765.50
    win = CostModel().round_trip(Decimal(1), Decimal(50_000), Decimal(52_000), tier=1)
    assert win.entry_price == Decimal("50075.00")
    assert win.exit_price == Decimal("51921.48")
    assert (win.entry_fee, win.exit_fee) == (Decimal("300.45"), Decimal("311.53"))
    assert win.gross_pnl == Decimal(2000)
    assert win.net_pnl == Decimal("1234.50")
    assert win.costs == Decimal("765.50")


def test_the_mirror_losing_trade_and_the_break_even_win_rate():
    # Exit: sell 1 BTC at a 48,000 mid:
    #   slippage = 10 + 5 * sqrt(0.96) = 10 + 5 * 0.9797958... = 14.8989794... bps
    #   fill     = 48,000 - 48,000 * 0.00148989794... = 48,000 - 71.5151... = 47,928.4848...
    #            -> 47,928.48
    #   fee      = 47,928.48 * 0.006 = 287.57088 -> 287.57
    # net = (47,928.48 - 50,075.00) - 300.45 - 287.57 = -2,146.52 - 588.02 = -2,734.54
    # Break-even: p * 1,234.50 + (1 - p) * -2,734.54 = 0
    #   p = 2,734.54 / (1,234.50 + 2,734.54) = 2,734.54 / 3,969.04 = 0.68897 -> 68.90%
    model = CostModel()
    win = model.round_trip(Decimal(1), Decimal(50_000), Decimal(52_000), tier=1)
    loss = model.round_trip(Decimal(1), Decimal(50_000), Decimal(48_000), tier=1)
    assert loss.exit_price == Decimal("47928.48")
    assert loss.exit_fee == Decimal("287.57")
    assert loss.net_pnl == Decimal("-2734.54")
    rate = break_even_win_rate(win.net_pnl, loss.net_pnl)
    assert rate.quantize(Decimal("0.0001"), ROUND_HALF_EVEN) == Decimal("0.6890")


def test_at_the_policy_fees_the_same_trades_need_84_percent_winners():
    # policy.yaml's taker 120 bps instead of 60: the fills are the same, the fees double.
    #   entry fee 50,075.00 * 0.012 = 600.90
    #   exit fees 51,921.48 * 0.012 = 623.05776 -> 623.06; 47,928.48 * 0.012 = 575.14176 -> 575.14
    # win  =  1,846.48 - 600.90 - 623.06 =    622.52
    # loss = -2,146.52 - 600.90 - 575.14 = -3,322.56
    # break-even = 3,322.56 / (622.52 + 3,322.56) = 3,322.56 / 3,945.08 = 0.84220 -> 84.22%
    model = CostModel(maker_fee_bps=Decimal(60), taker_fee_bps=Decimal(120))
    win = model.round_trip(Decimal(1), Decimal(50_000), Decimal(52_000), tier=1)
    loss = model.round_trip(Decimal(1), Decimal(50_000), Decimal(48_000), tier=1)
    assert (win.exit_fee, loss.exit_fee) == (Decimal("623.06"), Decimal("575.14"))
    assert (win.net_pnl, loss.net_pnl) == (Decimal("622.52"), Decimal("-3322.56"))
    rate = break_even_win_rate(win.net_pnl, loss.net_pnl)
    assert rate.quantize(Decimal("0.0001"), ROUND_HALF_EVEN) == Decimal("0.8422")


def test_a_break_even_rate_needs_a_win_and_a_loss():
    with pytest.raises(ValueError):
        break_even_win_rate(Decimal(-1), Decimal(-2))
    with pytest.raises(ValueError):
        break_even_win_rate(Decimal(2), Decimal(1))


# --- fills and fees -------------------------------------------------------------------


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_fills_are_against_us_and_on_the_tick(tier):
    mid, size = Decimal("2000.005"), Decimal("3")
    model = CostModel()
    exact = model.slippage_bps(tier, size * mid) / BPS
    buy = model.fill_price(mid, Side.BUY, tier, size, TICK)
    sell = model.fill_price(mid, Side.SELL, tier, size, TICK)
    assert sell < mid < buy
    assert buy == quantize(mid * (1 + exact), TICK, Rounding.CEILING)
    assert sell == quantize(mid * (1 - exact), TICK, Rounding.FLOOR)


def test_without_slippage_fills_at_the_mid_rounded_against_us():
    model = CostModel().without_slippage()
    assert model.slippage_bps(3, Decimal(10**9)) == 0
    assert model.fill_price(Decimal("100.005"), Side.BUY, 3, Decimal(5), TICK) == Decimal("100.01")
    assert model.fill_price(Decimal("100.005"), Side.SELL, 3, Decimal(5), TICK) == Decimal("100.00")
    assert model.fill_price(Decimal(100), Side.BUY, 3, Decimal(5), TICK) == Decimal(100)


def test_fees_by_liquidity_and_without_fees():
    model = CostModel()
    assert model.fee(Decimal(1000), Liquidity.MAKER) == Decimal("4.00")
    assert model.fee(Decimal(1000), Liquidity.TAKER) == Decimal("6.00")
    assert model.fee_rates() == (Decimal("0.004"), Decimal("0.006"))
    free = model.without_fees()
    assert free.fee(Decimal(1000), Liquidity.TAKER) == 0
    assert free.fee_rates() == (0, 0)
    assert free.slippage_bps(1, Decimal(50_000)) == Decimal(15)


def test_slippage_grows_with_the_square_root_of_size():
    model = CostModel()
    impact = [model.slippage_bps(1, Decimal(50_000) * k) - 10 for k in (1, 4, 9, 16)]
    assert impact == [Decimal(5), Decimal(10), Decimal(15), Decimal(20)]


def test_thinner_tiers_cost_more_at_equal_size():
    for notional in (Decimal(100), Decimal(10_000), Decimal(1_000_000)):
        costs = [CostModel().slippage_bps(tier, notional) for tier in (1, 2, 3)]
        assert costs[0] < costs[1] < costs[2]


def test_from_config_takes_the_tiers_and_the_policy_fees():
    config = load_config(CONFIG_DIR)
    model = CostModel.from_config(config.universe, config.policy.execution)
    assert model.source == "config"
    assert (model.maker_fee_bps, model.taker_fee_bps) == (Decimal(60), Decimal(120))
    assert model.tiers == {
        1: TierCosts(Decimal(10), Decimal(5), Decimal(50_000)),
        2: TierCosts(Decimal(25), Decimal(10), Decimal(10_000)),
        3: TierCosts(Decimal(50), Decimal(20), Decimal(2_000)),
    }


def test_configured_impact_keys_win_and_missing_ones_take_the_model_defaults():
    product = {"product_id": "ADA-USD", "theme": "smart_contracts", "tier": 2}
    configured = {"base_slippage_bps": 8, "impact_coefficient_bps": 3, "typical_notional_usd": 7}
    tiers = {2: {"base_slippage_bps": 30}, 3: configured}
    universe = UniverseConfig.model_validate({"tiers": tiers, "products": [product]})
    model = CostModel.from_config(universe, ExecutionPolicy())
    assert model.tier(2) == TierCosts(Decimal(30), Decimal(10), Decimal(10_000))
    assert model.tier(3) == TierCosts(Decimal(8), Decimal(3), Decimal(7))
    with pytest.raises(ValueError, match="tier 1"):
        model.tier(1)


def test_a_calibration_overrides_the_configured_tiers():
    config = load_config(CONFIG_DIR)
    calibrated = TierCosts(Decimal(12), Decimal(7), Decimal(40_000))
    model = CostModel.from_config(config.universe, config.policy.execution, {1: calibrated})
    assert model.source == "calibration"
    assert model.tier(1) == calibrated
    assert model.tier(2) == TierCosts(Decimal(25), Decimal(10), Decimal(10_000))


def test_load_calibration_reads_the_exported_json(tmp_path):
    path = tmp_path / "calibration.json"
    tier = {
        "base_slippage_bps": "12",
        "impact_coefficient_bps": "7",
        "typical_notional_usd": "50000",
    }
    path.write_text(json.dumps({"tiers": {"1": tier}}))
    assert load_calibration(path) == {1: TierCosts(Decimal(12), Decimal(7), Decimal(50_000))}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"tier": {}}',
        '{"tiers": {"1": {"base_slippage_bps": "12"}}}',
        '{"tiers": {"one": {"base_slippage_bps": "1", "impact_coefficient_bps": "1", '
        '"typical_notional_usd": "1"}}}',
        '{"tiers": {"1": {"base_slippage_bps": "-1", "impact_coefficient_bps": "1", '
        '"typical_notional_usd": "1"}}}',
        '{"tiers": {"1": {"base_slippage_bps": 1.5, "impact_coefficient_bps": "1", '
        '"typical_notional_usd": "1"}}}',
    ],
)
def test_a_broken_calibration_is_refused_by_name(tmp_path, text):
    path = tmp_path / "calibration.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"calibration\.json: not a slippage calibration"):
        load_calibration(path)


def test_a_missing_calibration_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="not a slippage calibration"):
        load_calibration(tmp_path / "absent.json")


# --- the book the backtest walks ------------------------------------------------------


def _walk(levels: list[BookLevel], size: Decimal, mid: Decimal) -> tuple[Decimal, Decimal]:
    """The average price of taking ``size`` from ``levels``, and the size-rounding slack on it.

    Each level's size is rounded down to the increment, so the boundary after level k sits
    up to k increments early, and that much of the order pays a later level's price: at
    most ``levels taken * increment * |worst price - mid|`` in all, over ``size``.
    """
    book = [(level.price, level.size) for level in levels]
    executions = walk_book(book, base_size=size, base_increment=BASE_INCREMENT)
    assert sum(taken for _, taken in executions) == size
    average = sum(price * taken for price, taken in executions) / size
    worst = max(abs(price - mid) for price, _ in executions)
    return average, len(executions) * BASE_INCREMENT * worst / size


def _boundaries(costs: TierCosts) -> list[Decimal]:
    return [costs.typical_notional * step for step in BOUNDARY_STEPS]


@pytest.mark.parametrize("side", list(Side))
@pytest.mark.parametrize("tier", [1, 2, 3])
def test_an_order_ending_on_a_boundary_pays_the_model(tier, side):
    mid, model = Decimal(50_000), CostModel()
    bids, asks = model.book(mid, tier, TICK, BASE_INCREMENT)
    levels = asks if side is Side.BUY else bids
    depth = sum(level.size for level in levels)
    for boundary in _boundaries(model.tier(tier)):
        # The last boundary is a few increments beyond the book: each level rounds down.
        size = min(quantize(boundary / mid, BASE_INCREMENT, Rounding.FLOOR), depth)
        average, slack = _walk(levels, size, mid)
        # size * mid falls short of the boundary by under an increment: the model there
        # is that much cheaper than at the boundary.
        short = model.slippage_bps(tier, boundary) - model.slippage_bps(tier, size * mid)
        fill = model.fill_price(mid, side, tier, size, TICK)
        assert abs(average - fill) <= TICK + slack + mid * short / BPS, boundary


def test_where_the_interpolation_bound_comes_from():
    """Where INTERPOLATION_BOUND comes from.

    The total cost of a fill, C(q) = q * slippage_bps(q) = base * q + a * q^1.5 / sqrt(T),
    is convex. Between two boundaries N[k-1] < q <= N[k] the book charges the chord of C,
    so the walk's bps W(q) = chord(q) / q: never below the model (a chord of a convex
    function lies above it) and never above the model at N[k] (the chord extended to q = 0
    falls below C(0) = 0, so chord(q) / q rises with q). The base is linear and drops out:
    with u = q / N[k-1] in [1, r], r = N[k] / N[k-1] = sqrt(10),

        W(q) - model(q) = a * sqrt(N[k-1] / T) * g(u)
        g(u) = (1 + (u - 1) * m - u^1.5) / u,   m = (r^1.5 - 1) / (r - 1)

    g peaks at 0.165 near u = 1.73, so the excess is at most 0.165 / sqrt(r) = 0.0928 of
    the impact at N[k], a * sqrt(N[k] / T): under INTERPOLATION_BOUND = 0.1 of it. Below
    the first boundary the book has one price, the model's at N[0], so there the excess
    is at most the whole impact at N[0], a * sqrt(0.001).
    """
    r = Decimal(10).sqrt()
    m = (r ** Decimal("1.5") - 1) / (r - 1)
    points = (1 + (r - 1) * k / 1000 for k in range(1001))
    peak = max((1 + (u - 1) * m - u ** Decimal("1.5")) / u for u in points)
    assert Decimal("0.164") < peak < Decimal("0.166")
    assert peak / r.sqrt() < INTERPOLATION_BOUND


@pytest.mark.parametrize("side", list(Side))
@pytest.mark.parametrize("tier", [1, 2, 3])
def test_between_boundaries_the_walk_stays_within_the_bound(tier, side):
    mid, model = Decimal(50_000), CostModel()
    costs = model.tier(tier)
    bids, asks = model.book(mid, tier, TICK, BASE_INCREMENT)
    levels, sign = (asks, 1) if side is Side.BUY else (bids, -1)
    uppers = _boundaries(costs)
    # Halfway (geometrically) between boundaries, near where the excess peaks.
    inside = [uppers[0] / 2] + [(low * high).sqrt() for low, high in pairwise(uppers)]
    for upper, notional in zip(uppers, inside, strict=True):
        size = quantize(notional / mid, BASE_INCREMENT, Rounding.FLOOR)
        average, slack = _walk(levels, size, mid)
        excess = (average - model.fill_price(mid, side, tier, size, TICK)) * sign
        impact = costs.impact_coefficient_bps * (upper / costs.typical_notional).sqrt()
        bound = mid * (impact if upper == uppers[0] else INTERPOLATION_BOUND * impact) / BPS
        assert -TICK <= excess <= bound + TICK + slack, notional
    # The bound is tight: in the widest interval the excess is 0.0926 of the impact.
    assert excess >= Decimal("0.9") * bound - TICK


def test_bids_mirror_asks_around_a_mid_on_the_tick():
    mid = Decimal("1234.56")
    for tier in (1, 2, 3):
        bids, asks = CostModel().book(mid, tier, TICK, BASE_INCREMENT)
        assert [(mid - bid.price, bid.size) for bid in bids] == [
            (ask.price - mid, ask.size) for ask in asks
        ]


def test_without_slippage_the_book_is_locked_at_the_mid():
    mid = Decimal("1234.56")
    bids, asks = CostModel().without_slippage().book(mid, 1, TICK, BASE_INCREMENT)
    assert len(bids) == len(asks) == 1
    assert bids[0].price == asks[0].price == mid
    assert bids[0].size > Decimal(10**9)


ticks = st.sampled_from([Decimal("0.01"), Decimal("0.0001")])
tiers = st.sampled_from([1, 2, 3])


@given(ticks, st.integers(1_000, 10_000_000), tiers)
def test_the_book_is_never_crossed(tick, mid_ticks, tier):
    mid = mid_ticks * tick
    bids, asks = CostModel().book(mid, tier, tick, BASE_INCREMENT)
    assert bids[0].price < mid < asks[0].price
    assert [level.price for level in asks] == sorted({level.price for level in asks})
    assert [level.price for level in bids] == sorted({level.price for level in bids}, reverse=True)


@given(ticks, st.integers(1_000, 10_000_000), tiers, st.integers(-3_000, 1_990))
def test_a_walk_costs_between_the_base_and_the_model_at_the_next_boundary(
    tick, mid_ticks, tier, millidecades
):
    mid, model = mid_ticks * tick, CostModel()
    costs = model.tier(tier)
    notional = costs.typical_notional * Decimal(10) ** (Decimal(millidecades) / 1000)
    size = quantize(notional / mid, BASE_INCREMENT, Rounding.FLOOR)
    following = min(n for n in _boundaries(costs) if n >= size * mid)
    cheapest, dearest = costs.base_slippage_bps / BPS, costs.slippage_bps(following) / BPS
    bids, asks = model.book(mid, tier, tick, BASE_INCREMENT)
    paid, slack = _walk(asks, size, mid)
    assert mid * (1 + cheapest) <= paid <= mid * (1 + dearest) + tick + slack
    received, slack = _walk(bids, size, mid)
    assert mid * (1 - dearest) - tick - slack <= received <= mid * (1 - cheapest)
