"""What can be checked of docker-compose.yml without a Docker engine."""

import importlib.util
import re
from pathlib import Path

import yaml

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


def test_every_python_command_names_a_module_of_the_project():
    for name, service in SERVICES.items():
        command = service.get("command") or []
        if command[:2] == ["python", "-m"]:
            module = command[2]
            assert module.split(".")[0] in {"services", "shared"}, f"{name}: {module}"
            assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"


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
    documented = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert used, "the compose file reads no variables? the pattern is broken"
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"


def test_the_database_password_has_no_default():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${POSTGRES_PASSWORD:-" not in text
