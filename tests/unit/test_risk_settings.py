"""risk's settings: LIVE cannot start without a control token, and a token must be long."""

from __future__ import annotations

import pytest

from services.risk.__main__ import main
from services.risk.app import RiskSettings
from shared.settings import SettingsError, load_settings


def test_live_refuses_to_start_without_a_control_token(monkeypatch, capsys):
    monkeypatch.setenv("TRADING_MODE", "LIVE")
    monkeypatch.delenv("CONTROL_API_TOKEN", raising=False)
    assert main() == 2
    assert "CONTROL_API_TOKEN is required in LIVE" in capsys.readouterr().err


def test_a_short_token_is_refused_and_never_echoed():
    with pytest.raises(SettingsError) as refused:
        load_settings(RiskSettings, control_api_token="short-secret")
    assert "at least 16 characters" in str(refused.value)
    assert "short-secret" not in str(refused.value)


def test_paper_starts_without_a_token_and_live_with_one():
    assert load_settings(RiskSettings).control_api_token is None
    live = load_settings(RiskSettings, trading_mode="LIVE", control_api_token="x" * 24)
    assert live.control_api_token is not None
    assert "x" * 24 not in repr(live)
