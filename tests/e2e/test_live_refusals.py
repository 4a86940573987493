"""LIVE does not start half configured: each process refuses, says why, and shows no secret.

- every service refuses a config the validator rejects, naming the problem;
- risk refuses LIVE without the control token (the kill switch);
- the config-validator, the init step compose runs first, refuses LIVE without the
  Coinbase credentials and the control token, naming them and printing no value.

Execution's refusal without a key is in test_execution_process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.venue import CONFIG_DIR, CdpTestKey

SERVICES = ["risk", "execution", "signal", "market_data", "rate_limiter"]
TOKEN = "live-refusal-control-token-91ab"


def _refused(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0, f"{module} started: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


@pytest.fixture
def broken_config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["risk"]["max_trades_per_hour"] = policy["risk"]["max_trades_per_day"] + 1
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    return target


@pytest.mark.parametrize("service", SERVICES)
def test_live_refuses_a_config_the_validator_rejects(
    service: str, broken_config: Path, redis_url: str, database_url: str
) -> None:
    key = CdpTestKey.generate()
    env = {
        "TRADING_MODE": "LIVE", "CONFIG_DIR": str(broken_config), "REDIS_URL": redis_url,
        "DATABASE_URL": database_url, "CONTROL_API_TOKEN": TOKEN, "CB_API_KEY": key.name,
        "CB_API_SECRET": key.private_pem,
    }  # fmt: skip
    done = _refused(f"services.{service}", env)
    said = done.stdout + done.stderr
    assert "max_trades_per_hour" in said, said
    assert TOKEN not in said and key.private_pem.splitlines()[1] not in said


def test_risk_refuses_live_without_the_control_token(redis_url: str, database_url: str) -> None:
    env = {"TRADING_MODE": "LIVE", "CONFIG_DIR": str(CONFIG_DIR), "REDIS_URL": redis_url,
           "DATABASE_URL": database_url, "CONTROL_API_TOKEN": ""}  # fmt: skip
    done = _refused("services.risk", env)
    assert "CONTROL_API_TOKEN is required in LIVE" in done.stderr


def test_the_validator_refuses_live_without_credentials_and_names_them() -> None:
    env = {"TRADING_MODE": "LIVE", "CB_API_KEY": "", "CB_API_SECRET": "",
           "CONTROL_API_TOKEN": TOKEN}  # fmt: skip
    done = _refused("services.config_validator", env, "--config-dir", str(CONFIG_DIR))
    said = done.stdout + done.stderr
    assert "CB_API_KEY" in said and "CB_API_SECRET" in said and "INVALID" in said
    assert "CONTROL_API_TOKEN" not in said.split("missing=")[-1]  # it is set: not missing
    assert TOKEN not in said
