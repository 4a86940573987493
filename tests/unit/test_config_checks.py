"""Each check, broken alone in a copy of the shipped config, is reported with its key."""

from __future__ import annotations

from typing import Any

import pytest

from services.config_validator.report import validate
from shared.config import CHECKS, Severity
from tests.unit.config_helpers import SHIPPED, validate_changed


def risk(documents: dict[str, Any]) -> dict[str, Any]:
    return documents["policy"]["risk"]


def execution(documents: dict[str, Any]) -> dict[str, Any]:
    return documents["policy"]["execution"]


def _set(getter, **values):  # type: ignore[no-untyped-def]
    return lambda documents: getter(documents).update(values)


BREAKERS = {
    "strategy_params_ordered": (
        lambda d: d["strategies"]["strategies"][0]["params"].update({"fast_period": 30}),
        "strategies[0].params.fast_period",
    ),
    "theme_caps_total": (
        _set(risk, theme_caps_pct={"store_of_value": 60, "smart_contracts": 35, "payments": 15,
                                   "defi": 10}),
        "risk.theme_caps_pct",
    ),
    "asset_cap_within_theme": (
        lambda d: risk(d)["asset_caps_pct"].update({"ETH-USD": 40}),
        "risk.asset_caps_pct.ETH-USD",
    ),
    "stop_below_take_profit": (_set(risk, stop_loss_pct=6), "risk.stop_loss_pct"),
    "daily_trades_reachable": (
        _set(risk, max_trades_per_hour=5, max_trades_per_day=150), "risk.max_trades_per_day"
    ),
    "budgets_consistent": (_set(risk, daily_budget_usd=30000), "risk.daily_budget_usd"),
    "ttl_order": (_set(execution, pending_ttl_s=400), "execution"),
    "fee_bounds": (_set(execution, maker_fee_bps=130), "execution.maker_fee_bps"),
    "cooldown_within_lookback": (
        _set(risk, new_trade_cooldown_s=3600), "risk.new_trade_cooldown_s"
    ),
    "daily_trades_at_least_hourly": (
        _set(risk, max_trades_per_hour=7, max_trades_per_day=6), "risk.max_trades_per_hour"
    ),
    "dust_below_min_trade": (_set(risk, dust_threshold_usd=10), "risk.dust_threshold_usd"),
    "strategy_products_tradable": (
        lambda d: d["strategies"]["strategies"][0]["products"].append("UNI-USD"),
        "strategies[0].products[2]",
    ),
    "strategy_size_tradable": (
        lambda d: d["strategies"]["strategies"][1].update(quote_size_usd=5),
        "strategies[1].quote_size_usd",
    ),
    "universe_theme_capped": (
        lambda d: d["universe"]["products"][6].update(theme="gaming"), "products[6].theme"
    ),
    "universe_tier_priced": (
        lambda d: d["universe"]["tiers"].pop(3), "products[8].tier"
    ),
    "unique_names": (
        lambda d: d["universe"]["products"].append(dict(d["universe"]["products"][1])),
        "products",
    ),
    "rate_limits_within_coinbase": (
        lambda d: d["ratelimits"]["private"].update(rate_per_s=31), "private.rate_per_s"
    ),
}  # fmt: skip


def test_the_shipped_config_is_valid_without_warnings():
    report = validate(SHIPPED, {})
    assert report.exit_status == 0, report.as_text()
    assert report.problems == []


def test_every_error_check_has_a_breaking_case_here():
    error_checks = {check.id for check in CHECKS} - {"caps_that_never_bind"}
    assert error_checks == set(BREAKERS) | {"live_credentials_present"}


@pytest.mark.parametrize("check_id", sorted(BREAKERS))
def test_a_config_breaking_one_check_fails_on_exactly_that_check(tmp_path, check_id):
    change, path = BREAKERS[check_id]
    report = validate_changed(tmp_path, change)
    errors = [p for p in report.problems if p.severity is Severity.ERROR]
    assert report.exit_status == 1, report.as_text()
    assert {p.check for p in errors} == {check_id}, report.as_text()
    assert path in {p.path for p in errors}
    assert all(p.hint and p.message for p in errors)
    key = path.rsplit(".", 1)[-1].split("[")[0]
    assert key in report.as_text()


def test_five_an_hour_and_fifteen_a_day_is_no_contradiction(tmp_path):
    report = validate_changed(tmp_path, _set(risk, max_trades_per_hour=5, max_trades_per_day=15))
    assert report.exit_status == 0 and report.problems == []


def test_a_cap_that_can_never_bind_is_a_warning_that_does_not_block(tmp_path):
    report = validate_changed(
        tmp_path,
        lambda d: risk(d)["theme_caps_pct"].update({"payments": 25, "smart_contracts": 25}),
    )
    warnings = [p for p in report.problems if p.severity is Severity.WARNING]
    assert report.exit_status == 0
    assert [p.path for p in warnings] == ["risk.theme_caps_pct.payments"]
    assert "never binds" in warnings[0].message


def test_every_problem_is_reported_at_once(tmp_path):
    def break_three(documents):  # type: ignore[no-untyped-def]
        risk(documents).update(stop_loss_pct=9, dust_threshold_usd=50)
        execution(documents).update(stale_ttl_s=10)

    report = validate_changed(tmp_path, break_three)
    assert {p.check for p in report.problems} == {
        "stop_below_take_profit", "dust_below_min_trade", "ttl_order",
    }  # fmt: skip


def test_live_without_credentials_is_refused_naming_only_what_is_missing(tmp_path):
    environ = {"TRADING_MODE": "LIVE", "CB_API_SECRET": "super-secret-pem-value"}
    report = validate_changed(tmp_path, lambda d: None, environ)
    (problem,) = report.problems
    assert report.exit_status == 1 and problem.check == "live_credentials_present"
    assert problem.values == {"missing": ["CB_API_KEY", "CONTROL_API_TOKEN"]}
    assert "super-secret-pem-value" not in report.as_text() + report.as_json()


def test_live_with_every_credential_passes(tmp_path):
    environ = {"TRADING_MODE": "LIVE", "CB_API_KEY": "k", "CB_API_SECRET": "s",
               "CONTROL_API_TOKEN": "t"}  # fmt: skip
    assert validate_changed(tmp_path, lambda d: None, environ).exit_status == 0
