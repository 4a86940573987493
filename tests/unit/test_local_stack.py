"""The local stack's reading of docker-compose.yml, and its process supervision."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.local.compose import (
    ROOT,
    ComposeError,
    LocalService,
    Plan,
    interpolate,
    plan,
    read_env_file,
)
from deploy.local.stack import Stack, StackError

REDIS = "redis://127.0.0.1:6399/3"
DATABASE = "postgresql://postgres@127.0.0.1:5432/paper"


def _variables() -> dict[str, str]:
    return {**read_env_file(ROOT / ".env.example"), "POSTGRES_PASSWORD": "x"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "1"), ("${MISSING}", ""), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""),
        ("${MISSING-d}", "d"), ("${A:-d}", "1"), ("$${A}", "${A}"), ("x${A}y${B:-2}", "x1y2"),
    ],
)  # fmt: skip
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert interpolate(text, {"A": "1", "EMPTY": ""}) == expected


def test_a_required_variable_stops_the_plan_with_its_message() -> None:
    with pytest.raises(ComposeError, match="set it"):
        interpolate("${NEED:?set it}", {"NEED": ""})
    assert interpolate("${NEED?set it}", {"NEED": ""}) == ""  # without ':' only unset fails


def test_the_plan_runs_our_services_in_dependency_order_with_compose_commands() -> None:
    built = plan(_variables(), redis_url=REDIS, database_url=DATABASE)
    names = [s.name for s in built.services]
    assert names[:2] == ["config-validator", "migrate"]
    assert set(names) == {"config-validator", "migrate", "rate-limiter", "market-data",
                          "signal", "risk", "execution"}  # fmt: skip
    for service in built.services:  # each after what it depends on
        assert all(names.index(t) < names.index(service.name) for t in service.depends_on)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in built.services:
        assert service.argv[0] == sys.executable
        assert service.argv[1:3] == ["-m", compose[service.name]["command"][2]]
        assert service.one_shot == (compose[service.name].get("restart") == "no")
    validator = built.get("config-validator")
    assert validator.argv[-1] == str(ROOT / "config")  # /app/config is the bind mount's source


def test_docker_only_addresses_become_local_ones() -> None:
    built = plan(_variables(), redis_url=REDIS, database_url=DATABASE, ports={"rate-limiter": 9123},
                 profiles=frozenset({"sim"}))  # fmt: skip
    market_data = built.get("market-data")
    assert market_data.env["REDIS_URL"] == REDIS
    assert market_data.env["RATE_LIMITER_URL"] == "http://127.0.0.1:9123"
    assert (
        market_data.env["EXCHANGE_SIM_URL"] == f"http://127.0.0.1:{built.get('exchange-sim').port}"
    )
    assert market_data.env["HTTP_HOST"] == "127.0.0.1"
    assert market_data.env["CONFIG_DIR"] == str(ROOT / "config")
    assert market_data.depends_on["exchange-sim"] == "service_healthy"  # sim first, when on
    assert built.get("rate-limiter").env["HTTP_PORT"] == "9123"
    assert built.get("risk").env["DATABASE_URL"] == DATABASE
    assert built.get("execution").env["COINBASE_REST_URL"] == "https://api.coinbase.com"
    assert built.get("risk").health_path == "/readyz"
    assert built.get("market-data").health_path == "/healthz"


def test_profiles_and_other_images_stay_out_unless_asked_for(tmp_path: Path) -> None:
    built = plan(_variables(), redis_url=REDIS, database_url=DATABASE)
    names = {s.name for s in built.services}
    assert "exchange-sim" not in names and "market-data" in names
    assert not names & {"redis", "postgres", "prometheus", "grafana"}
    assert "exchange-sim" not in built.get("market-data").depends_on
    other = tmp_path / "config"
    moved = plan(_variables(), redis_url=REDIS, database_url=DATABASE,
                 host_paths={"/app/config": other})  # fmt: skip
    assert moved.get("signal").env["CONFIG_DIR"] == str(other.resolve())


def test_a_missing_required_variable_names_the_service() -> None:
    values = _variables()
    values["POSTGRES_PASSWORD"] = ""
    with pytest.raises(ComposeError, match=r"^migrate: POSTGRES_PASSWORD"):
        plan(values, redis_url=REDIS, database_url=DATABASE)


# --- supervision ---------------------------------------------------------------------


def _service(name: str, code: str, *, one_shot: bool = False) -> LocalService:
    return LocalService(name, [sys.executable, "-c", code], {}, None, None, one_shot)


class _Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def test_a_crashed_service_is_started_again_and_stop_terminates_everything() -> None:
    lines = _Lines()
    crash = "import sys; print('up', flush=True); sys.exit(3)"
    serve = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n" \
            "print('serving', flush=True)\nwhile True: time.sleep(0.05)"  # fmt: skip
    stack = Stack(Plan([_service("init", "print('ok')", one_shot=True),
                        _service("crashy", crash), _service("steady", serve)]),
                  write=lines, grace_s=5)  # fmt: skip
    stack.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and lines.count("crashy          | up") < 2:
            time.sleep(0.05)
    finally:
        statuses = stack.stop()
    assert "init            | ok" in lines
    assert any(x.startswith("crashy          | exited with status 3") for x in lines)
    assert any(x.startswith("crashy          | started again") for x in lines)
    assert lines.count("crashy          | up") >= 2, lines
    assert statuses["steady"] == 0  # SIGTERM, handled: a clean exit
    assert "steady          | serving" in lines


def test_a_failing_init_service_stops_the_stack_before_anything_runs() -> None:
    lines = _Lines()
    stack = Stack(Plan([_service("check", "import sys; print('bad config'); sys.exit(1)",
                                 one_shot=True), _service("after", "print('never')")]),
                  write=lines)  # fmt: skip
    with pytest.raises(StackError, match="check failed with exit status 1"):
        stack.start()
    assert "check           | bad config" in lines
    assert not any(x.startswith("after") for x in lines)
