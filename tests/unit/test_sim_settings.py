"""exchange-sim's settings read the way compose hands them over."""

from __future__ import annotations

import pytest

from services.exchange_sim.app import ExchangeSimSettings
from shared.settings import SettingsError, load_settings


def test_variables_compose_leaves_empty_mean_their_defaults(monkeypatch):
    for name in ("SIM_API_KEYS", "SIM_REPLAY_DIR", "SIM_PRODUCTS", "SIM_SEED"):
        monkeypatch.setenv(name, "")
    settings = load_settings(ExchangeSimSettings)
    assert settings.sim_api_keys == {} and settings.sim_replay_dir is None
    assert settings.product_ids() is None and settings.sim_seed == 7


def test_keys_and_products_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SIM_API_KEYS", '{"organizations/o/apiKeys/k": "PEM"}')
    monkeypatch.setenv("SIM_PRODUCTS", "BTC-USD, ETH-USD")
    settings = load_settings(ExchangeSimSettings)
    assert settings.sim_api_keys == {"organizations/o/apiKeys/k": "PEM"}
    assert settings.product_ids() == ["BTC-USD", "ETH-USD"]


def test_a_bad_value_names_its_variable(monkeypatch):
    monkeypatch.setenv("SIM_STEP_MS", "1")
    with pytest.raises(SettingsError, match="SIM_STEP_MS"):
        load_settings(ExchangeSimSettings)
