import pytest

from shared.messages import TradingMode
from shared.settings import ServiceSettings, SettingsError, load_settings


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRADING_MODE", "LIVE")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("HTTP_PORT", "8030")
    settings = load_settings(ServiceSettings)
    assert settings.trading_mode is TradingMode.LIVE
    assert settings.redis_url.get_secret_value() == "redis://cache:6379/2"
    assert settings.log_level == "DEBUG" and settings.http_port == 8030


def test_paper_is_the_default_mode(monkeypatch):
    monkeypatch.delenv("TRADING_MODE", raising=False)
    assert load_settings(ServiceSettings).trading_mode is TradingMode.PAPER


def test_every_problem_is_reported_and_no_secret_is_echoed(monkeypatch):
    monkeypatch.setenv("TRADING_MODE", "YOLO")
    monkeypatch.setenv("HTTP_PORT", "99999")
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter22@db/x")
    with pytest.raises(SettingsError) as caught:
        load_settings(ServiceSettings)
    message = str(caught.value)
    assert "TRADING_MODE" in message and "HTTP_PORT" in message and "DATABASE_URL" in message
    assert "hunter22" not in message


def test_secrets_are_hidden_in_repr(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://trader:hunter22@db/trading")
    settings = load_settings(ServiceSettings)
    assert "hunter22" not in repr(settings) and "hunter22" not in str(settings.model_dump())
    assert any("hunter22" in s.get_secret_value() for s in settings.secrets())
