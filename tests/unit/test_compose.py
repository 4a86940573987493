"""What can be checked of docker-compose.yml without a Docker engine."""

import importlib.util
import re
from pathlib import Path

import yaml

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def _one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def test_every_published_port_is_bound_to_localhost():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_long_running_services_have_a_healthcheck_and_a_restart_policy():
    for name, service in SERVICES.items():
        if _one_shot(service):
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name


def _program(service: dict) -> list[str]:
    """What the container runs: the entrypoint, else the command."""
    return list(service.get("entrypoint") or service.get("command") or [])


def test_every_service_of_our_image_runs_a_module_of_the_project():
    for name, service in SERVICES.items():
        if service.get("image") != "cbtrader:local":
            continue
        program = _program(service)
        assert program[:2] == ["python", "-m"], f"{name} runs {program}"
        module = program[2]
        assert module.split(".")[0] in {"services", "shared"}, f"{name}: {module}"
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"


def _settings_classes() -> dict[str, type[ServiceSettings]]:
    """Each service package's settings class, by package (``services.risk`` ...)."""
    for module in ("app", "cli"):
        for package in Path(ROOT / "services").iterdir():
            if (package / f"{module}.py").exists():
                importlib.import_module(f"services.{package.name}.{module}")
    found = {}
    for cls in ServiceSettings.__subclasses__():
        found[".".join(cls.__module__.split(".")[:2])] = cls
    return found


def test_every_variable_a_service_is_given_is_a_setting_it_reads():
    classes = _settings_classes()
    checked = 0
    for name, service in SERVICES.items():
        program = _program(service)
        if service.get("image") != "cbtrader:local" or not program[2].startswith("services."):
            continue
        settings = classes.get(".".join(program[2].split(".")[:2]))
        if settings is None:  # the config-validator reads its few variables by hand
            continue
        known = {field.upper() for field in settings.model_fields}
        given = set(service.get("environment") or {})
        assert given <= known, f"{name} is given variables it never reads: {given - known}"
        checked += 1
    assert checked >= 7, "the settings classes were not found"


def test_every_depends_on_target_exists_with_a_condition():
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            assert rule["condition"] in {
                "service_healthy", "service_completed_successfully", "service_started",
            }  # fmt: skip
            if _one_shot(SERVICES[target]):
                assert rule["condition"] == "service_completed_successfully", (name, target)


def test_everything_built_from_our_image_waits_for_the_config_validator():
    for name, service in SERVICES.items():
        if service.get("image") == "cbtrader:local" and name != "config-validator":
            rule = (service.get("depends_on") or {}).get("config-validator")
            assert rule == {"condition": "service_completed_successfully"}, name


def test_named_volumes_are_declared():
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_every_variable_the_compose_file_reads_is_documented_in_env_example():
    used = set(VARIABLE.findall((ROOT / "docker-compose.yml").read_text()))
    assert used, "the compose file reads no variables? the pattern is broken"
    assert used <= _documented(), f"undocumented in .env.example: {sorted(used - _documented())}"


def test_live_needs_the_overlay_and_the_overlay_needs_every_live_variable():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "LIVE" not in {str(s.get("environment", {}).get("TRADING_MODE")) for s in
                          SERVICES.values()}  # fmt: skip
    assert "${TRADING_MODE" not in text  # the base file cannot be switched to LIVE
    live_text = (ROOT / "docker-compose.live.yml").read_text()
    live = yaml.safe_load(live_text)["services"]
    assert set(live) <= set(SERVICES), f"the overlay names unknown {set(live) - set(SERVICES)}"
    for name in ("config-validator", "rate-limiter", "market-data", "signal", "risk",
                 "execution", "calibrate"):  # fmt: skip
        assert live[name]["environment"]["TRADING_MODE"] == "LIVE", name
    required = {
        "config-validator": ("CB_API_KEY", "CB_API_SECRET", "CONTROL_API_TOKEN"),
        "risk": ("CONTROL_API_TOKEN",),
        "execution": ("CB_API_KEY", "CB_API_SECRET", "COINBASE_REST_URL"),
    }
    for name, variables in required.items():
        for variable in variables:
            value = live[name]["environment"][variable]
            assert value.startswith(f"${{{variable}:?"), (name, variable)
    used = set(VARIABLE.findall(live_text))
    assert used <= _documented(), f"undocumented in .env.example: {sorted(used - _documented())}"


def _documented() -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }


def test_the_database_password_has_no_default():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${POSTGRES_PASSWORD:-" not in text
