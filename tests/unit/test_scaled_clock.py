"""The scaled rehearsal clock, the settings that choose a clock, and product status."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.clock import LiveClock, ScaledClock
from shared.coinbase.models import Product
from shared.messages import TradingMode
from shared.products import ProductInfo
from shared.settings import ServiceSettings, SettingsError, load_settings

ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN_NS = int(ORIGIN.timestamp()) * 1_000_000_000
SECOND = 1_000_000_000


class WallClock:
    """Stands in for ``time.time_ns``: the one port a ScaledClock reads."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    fake = WallClock(ORIGIN_NS)
    monkeypatch.setattr(time, "time_ns", fake)
    return fake


@pytest.fixture(autouse=True)
def _no_clock_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOCK_SPEED", "CLOCK_ORIGIN", "TRADING_MODE"):
        monkeypatch.delenv(name, raising=False)


def test_a_scaled_clock_reads_its_origin_at_its_origin(wall: WallClock) -> None:
    clock = ScaledClock(ORIGIN, 60)
    assert clock.now() == ORIGIN and clock.now_ns() == ORIGIN_NS
    assert clock.speed == 60


def test_a_scaled_clock_runs_speed_times_faster(wall: WallClock) -> None:
    clock = ScaledClock(ORIGIN, 60)
    wall.ns = ORIGIN_NS + 10 * SECOND
    assert clock.now() == ORIGIN + timedelta(minutes=10)
    wall.ns = ORIGIN_NS + 10 * SECOND + 1_500_000  # 1.5 ms of wall time: 90 ms of clock
    assert clock.now_ns() == ORIGIN_NS + 600 * SECOND + 90_000_000
    wall.ns = ORIGIN_NS - SECOND  # before the origin it runs fast too, backwards
    assert clock.now() == ORIGIN - timedelta(minutes=1)
    slow = ScaledClock(ORIGIN, 0.5)
    wall.ns = ORIGIN_NS + 10 * SECOND
    assert slow.now() == ORIGIN + timedelta(seconds=5)


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan")])
def test_a_scaled_clock_needs_a_positive_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(ORIGIN, speed)


def test_a_scaled_clock_refuses_a_naive_origin() -> None:
    with pytest.raises(ValueError):
        ScaledClock(datetime(2026, 1, 1), 2)  # noqa: DTZ001 - the mistake under test


# --- settings ----------------------------------------------------------------------


def test_a_clock_speed_needs_an_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="CLOCK_ORIGIN"):
        load_settings(ServiceSettings, clock_speed=60)
    monkeypatch.setenv("CLOCK_SPEED", "60")
    with pytest.raises(SettingsError, match="CLOCK_ORIGIN"):
        load_settings(ServiceSettings)
    with pytest.raises(ValidationError):
        ServiceSettings(clock_speed=60)
    with pytest.raises(ValidationError):
        ServiceSettings(clock_speed=60, clock_origin=datetime(2026, 1, 1))  # noqa: DTZ001


def test_live_refuses_a_scaled_clock() -> None:
    with pytest.raises(SettingsError, match="LIVE"):
        load_settings(
            ServiceSettings, trading_mode=TradingMode.LIVE, clock_speed=2, clock_origin=ORIGIN
        )
    live = load_settings(ServiceSettings, trading_mode=TradingMode.LIVE)
    assert isinstance(live.clock(), LiveClock)


def test_the_settings_choose_the_clock(monkeypatch: pytest.MonkeyPatch, wall: WallClock) -> None:
    assert isinstance(load_settings(ServiceSettings).clock(), LiveClock)
    # Speed 1 is real time, whatever origin is given.
    assert isinstance(ServiceSettings(clock_origin=ORIGIN).clock(), LiveClock)
    monkeypatch.setenv("CLOCK_SPEED", "120")
    monkeypatch.setenv("CLOCK_ORIGIN", "2026-01-01T00:00:00Z")
    clock = load_settings(ServiceSettings).clock()
    assert isinstance(clock, ScaledClock) and clock.speed == 120
    wall.ns = ORIGIN_NS + SECOND
    assert clock.now() == ORIGIN + timedelta(minutes=2)


# --- product status ----------------------------------------------------------------

UPDATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def product(**changes: object) -> Product:
    fields: dict[str, object] = {
        "product_id": "BTC-USD",
        "base_increment": "0.00000001",
        "quote_increment": "0.01",
        "price_increment": "0.01",
        "base_min_size": "0.00000001",
        "base_max_size": "3400",
        "quote_min_size": "1",
        "quote_max_size": "150000000",
        "status": "online",
    }
    return Product.model_validate(fields | changes)


def test_a_normal_online_product_allows_entries() -> None:
    info = ProductInfo.from_venue(product(), UPDATED)
    assert info.entries_allowed and info.listed
    assert (info.product_id, info.status, info.updated_at) == ("BTC-USD", "online", UPDATED)
    assert info.price_increment == Decimal("0.01") and info.base_max_size == Decimal("3400")
    assert not (info.trading_disabled or info.cancel_only or info.limit_only or info.post_only)


@pytest.mark.parametrize(
    "changes",
    [
        {"trading_disabled": True},
        {"is_disabled": True},
        {"cancel_only": True},
        {"status": "offline"},
    ],
)
def test_a_product_that_takes_no_new_orders_allows_no_entries(changes: dict[str, object]) -> None:
    info = ProductInfo.from_venue(product(**changes), UPDATED)
    assert not info.entries_allowed
    assert info.listed


def test_limit_or_post_only_still_allows_entries() -> None:
    info = ProductInfo.from_venue(product(limit_only=True, post_only=True), UPDATED)
    assert info.entries_allowed and info.limit_only and info.post_only


def test_a_missing_price_increment_falls_back_to_the_quote_increment() -> None:
    info = ProductInfo.from_venue(product(price_increment=None, quote_increment="0.05"), UPDATED)
    assert info.price_increment == Decimal("0.05")


def test_delisted_stops_entries_and_keeps_the_rest() -> None:
    info = ProductInfo.from_venue(product(), UPDATED)
    later = UPDATED + timedelta(hours=1)
    gone = info.delisted(later)
    assert not gone.listed and not gone.entries_allowed
    assert (gone.status, gone.updated_at) == ("delisted", later)
    assert gone.price_increment == info.price_increment and gone.product_id == info.product_id
    assert info.listed and info.entries_allowed  # the original is unchanged
