"""The validator as a user meets it: schema errors, broken files, the CLI, random input."""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.config_validator.__main__ import main
from services.config_validator.report import validate
from shared.config import ConfigError, load_config
from tests.unit.config_helpers import SHIPPED, shipped, validate_changed, write

ROOT = SHIPPED.parent


def test_unknown_keys_are_rejected_with_a_did_you_mean(tmp_path):
    report = validate_changed(tmp_path, lambda d: d["policy"]["risk"].update(take_proft_pct=6))
    (problem,) = report.problems
    assert problem.path == "risk.take_proft_pct"
    assert problem.hint == "did you mean 'take_profit_pct'?"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: d["policy"]["risk"].update(stop_loss_pct=120), "risk.stop_loss_pct", "100"),
        (lambda d: d["policy"]["execution"].update(stale_ttl_s=-5), "execution.stale_ttl_s", "0"),
        (lambda d: d["universe"]["products"][0].update(tier=4), "products.0.tier", "1, 2 or 3"),
        (lambda d: d["strategies"]["strategies"][0].update(kind="martingale"),
         "strategies.0", "ema_cross"),
        (lambda d: d["policy"]["risk"].update(max_open_trades="many"),
         "risk.max_open_trades", "integer"),
        (lambda d: d["universe"]["products"][0].update(product_id="btc/usd"),
         "products.0.product_id", "pattern"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_key_and_the_rule(tmp_path, change, path, words):
    report = validate_changed(tmp_path, change)
    assert report.exit_status == 1
    assert any(p.path == path and words in p.message + p.hint for p in report.problems), (
        report.as_text()
    )


def test_a_yaml_syntax_error_gives_line_and_column(tmp_path):
    write(tmp_path, shipped())
    (tmp_path / "universe.yaml").write_text("tiers:\n  1: {base_slippage_bps: 10\nproducts: []\n")
    report = validate(tmp_path, {})
    (problem,) = report.problems
    assert report.exit_status == 2
    assert problem.file == "universe.yaml" and problem.values == {"line": 3, "column": 9}
    assert "line 3, column 9" in problem.message


def test_a_missing_file_exits_2(tmp_path):
    documents = shipped()
    del documents["ratelimits"]
    write(tmp_path, documents)
    report = validate(tmp_path, {})
    assert report.exit_status == 2
    assert [(p.file, p.message) for p in report.problems] == [("ratelimits.yaml", "file not found")]


def test_services_load_the_config_or_refuse_with_every_error(tmp_path):
    config = load_config(SHIPPED)
    assert [p.product_id for p in config.universe.enabled_products()][:2] == ["BTC-USD", "ETH-USD"]
    documents = shipped()
    documents["policy"]["risk"].update(stop_loss_pct=9, dust_threshold_usd=50)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, documents))
    assert "stop_loss_pct" in str(caught.value) and "dust_threshold_usd" in str(caught.value)


def test_the_cli_prints_json_and_sets_the_exit_status(capsys):
    assert main(["--config-dir", str(SHIPPED), "--format", "json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["problems"] == []


def test_the_module_runs_as_the_init_container_does():
    result = subprocess.run(
        [sys.executable, "-m", "services.config_validator", "--config-dir", "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid (0 error(s), 0 warning(s))" in result.stdout


# --- random input never crashes it ------------------------------------------------------

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=2),
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


SHIPPED_DOCUMENTS = shipped()
ALL_PATHS = _paths(SHIPPED_DOCUMENTS)


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    documents = copy.deepcopy(SHIPPED_DOCUMENTS)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent: Any = documents
        try:
            for part in path[:-1]:
                parent = parent[part]
            # At the top level only whole files are replaced: the dict's keys are file names.
            actions = ["replace", "delete", "add"] if len(path) > 1 else ["replace"]
            action = draw(st.sampled_from(actions))
            if action == "replace":
                parent[path[-1]] = draw(leaves)
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=12))] = draw(leaves)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return documents


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=mutated_configs())
def test_random_configs_get_a_report_never_a_traceback(documents):
    with tempfile.TemporaryDirectory() as directory:
        report = validate(write(Path(directory), documents), {})
        assert report.exit_status in (0, 1, 2)
        parsed = orjson.loads(report.as_json())
        assert parsed["exit_status"] == report.exit_status
        assert all(p["file"] and p["message"] for p in parsed["problems"])
        assert (report.exit_status == 0) == (parsed["errors"] == 0)
        _check_what_the_init_container_prints(Path(directory), report)


def _check_what_the_init_container_prints(config_dir, report):
    """The command the init container runs, in both formats: the report's exit status,
    and a report on standard output (the text one names every problem and ends with the
    verdict)."""
    for output in ("text", "json"):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = main(["--config-dir", str(config_dir), "--format", output])
        assert status == report.exit_status
        if output == "json":
            assert orjson.loads(printed.getvalue())["exit_status"] == status
            continue
        text = printed.getvalue().rstrip("\n")
        verdict = text.splitlines()[-1]
        assert verdict.startswith(f"{config_dir}: {'valid' if status == 0 else 'INVALID'} (")
        assert all(str(problem) in text for problem in report.problems)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_random_file_text_gets_a_report_never_a_traceback(text):
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory), SHIPPED_DOCUMENTS)
        (path / "policy.yaml").write_text(text)
        report = validate(path, {})
        assert report.exit_status in (1, 2)
        assert report.problems
        _check_what_the_init_container_prints(path, report)


def test_yaml_dump_round_trip_of_the_shipped_config_is_still_valid(tmp_path):
    written = write(tmp_path, yaml.safe_load(yaml.safe_dump(SHIPPED_DOCUMENTS)))
    assert validate(written, {}).exit_status == 0
