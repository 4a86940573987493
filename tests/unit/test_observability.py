"""The observability config: Prometheus's scrape config and alert rules, Grafana's
provisioning and dashboards, and that every metric they read is one the services export.

promtool (Debian package ``prometheus``) checks the config, the rules and every dashboard
query; the metric names are read from prometheus_client's registry after importing every
module of services/ and shared/ that defines metrics.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from tests.support.promtool import promtool

# Installing promtool with apt-get, when it is missing, may take minutes.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCE_UID = "prometheus"
# Series Prometheus writes itself, next to what it scrapes.
BUILT_IN = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS",
    "ALERTS_FOR_STATE",
}  # fmt: skip
# Grafana's interval variables are not PromQL; promtool sees a duration in their place.
GRAFANA_INTERVAL = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{__\w+\}")


# --- reading expressions ----------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from, for messages."""

    source: str
    expr: str


def dashboard_queries(board: dict[str, Any], name: str) -> list[Query]:
    """Every panel target's ``expr`` and every query variable's query."""
    queries = []
    for panel in _panels(board):
        for target in panel.get("targets", []):
            where = f"{name}: panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}"
            queries.append(Query(where, target.get("expr", "")))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else query or ""
            expr = _variable_expr(text)
            if expr is not None:
                queries.append(Query(f"{name}: variable {variable.get('name')!r}", expr))
    return queries


_LABEL_VALUES = re.compile(r"\s*label_values\((.*),\s*\w+\s*\)\s*", re.DOTALL)
_QUERY_RESULT = re.compile(r"\s*query_result\((.*)\)\s*", re.DOTALL)


def _variable_expr(text: str) -> str | None:
    """The PromQL inside Grafana's variable functions; None for ``label_values(label)``."""
    match = _LABEL_VALUES.fullmatch(text) or _QUERY_RESULT.fullmatch(text)
    if match:
        return match.group(1)
    return None if text.strip().startswith("label_values(") else text


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def rule_queries() -> list[Query]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [
        Query(f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def load_dashboard(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def all_dashboard_queries() -> list[Query]:
    return [q for p in DASHBOARD_FILES for q in dashboard_queries(load_dashboard(p), p.name)]


# --- metric names in PromQL -------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r"""__name__\s*=\s*(?:"((?:\\.|[^"\\])*)"|'((?:\\.|[^'\\])*)')""")
_TOKEN = re.compile(r"(?P<number>\.?\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)|(?P<punct>\S)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    A name is an identifier outside strings, label matchers ``{...}`` and ranges
    ``[...]``, that is not a keyword, not a function or aggregation (followed by ``(``,
    ``by`` or ``without``) and not in the label list of ``by``, ``without``, ``on``,
    ``ignoring``, ``group_left`` or ``group_right``; plus ``{__name__="..."}``.
    """
    expr = GRAFANA_INTERVAL.sub("1m", expr)
    names = {a or b for a, b in _NAME_MATCHER.findall(expr)}
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(_STRING.sub('""', expr))]
    depth = {"{": 0, "[": 0}
    closing = {"}": "{", "]": "["}
    skip_list = False
    for index, (kind, text) in enumerate(tokens):
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if text in depth:
            depth[text] += 1
        elif text in closing:
            depth[closing[text]] -= 1
        elif depth["{"] or depth["["]:
            continue
        elif skip_list:
            skip_list = text != ")"
        elif kind == "name":
            if text in _LABEL_LISTS:
                skip_list = following == "("
            elif text.lower() in _KEYWORDS or following in {"(", "by", "without"}:
                continue
            else:
                names.add(text)
    return names


def _metric_modules() -> list[str]:
    """Every module of services/ and shared/ that imports prometheus_client."""
    modules = []
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        if "prometheus_client" in path.read_text():
            modules.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return modules


def _exposed(metric: MetricWrapperBase) -> set[str]:
    """The sample names ``metric`` exposes once it has a series.

    A labelled metric has no sample until its first ``labels()``, so a twin with one
    series, in a registry of its own, is rendered instead. Names are what the client
    writes, not what its type suggests: a Counter ``x_total`` is ``x_total``, and a
    Histogram whose lowest bucket is negative has no ``_sum``.
    """
    registry = CollectorRegistry()
    twin = type(metric)(
        metric._original_name, metric._documentation, labelnames=metric._labelnames,
        namespace=metric._namespace, subsystem=metric._subsystem, unit=metric._unit,
        registry=registry, **metric._kwargs,
    )  # fmt: skip
    if metric._labelnames:
        twin.labels(*["probe"] * len(metric._labelnames))
    return {sample.name for family in registry.collect() for sample in family.samples}


@cache
def exported_metrics() -> frozenset[str]:
    """What the services' /metrics serve: every metric their modules register in
    prometheus_client's REGISTRY (the registry /metrics renders)."""
    modules = [importlib.import_module(name) for name in _metric_modules()]
    registered = {family.name for family in REGISTRY.collect()}
    names: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase) and not value._labelvalues:
                assert value._name in registered, f"{module.__name__}: {value} not registered"
                names |= _exposed(value)
    return frozenset(names)


def unknown_metrics(queries: Iterable[Query], exported: Iterable[str]) -> list[str]:
    """One line per query that reads a metric nothing exports, or no metric at all."""
    known = set(exported) | BUILT_IN
    problems = []
    for query in queries:
        names = metric_names(query.expr)
        if not names:
            problems.append(f"{query.source}: no metric found in {query.expr!r}")
        elif names - known:
            problems.append(f"{query.source}: {sorted(names - known)} in {query.expr!r}")
    return problems


# --- promtool ---------------------------------------------------------------------------


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def parse_errors(queries: list[Query], workdir: Path) -> str:
    """promtool's complaints about ``queries``, each checked as a recording rule of its own
    group named after the query's source; "" when all parse."""
    groups = []
    for index, query in enumerate(queries):
        rule = {"record": f"check:query_{index}", "expr": GRAFANA_INTERVAL.sub("1m", query.expr)}
        groups.append({"name": query.source, "rules": [rule]})
    path = workdir / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    done = _promtool("check", "rules", str(path))
    return "" if done.returncode == 0 else done.stdout + done.stderr


# --- Prometheus -------------------------------------------------------------------------


def test_the_prometheus_config_passes_promtool():
    done = _promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout, done.stdout


def test_the_alert_rules_pass_promtool():
    done = _promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_compose_service_with_an_http_port_is_scraped_under_its_own_name():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    expected = {
        name: f"{name}:{service['environment']['HTTP_PORT']}"
        for name, service in compose.items()
        if "HTTP_PORT" in (service.get("environment") or {})
    }
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["alerts.yml"]
    scraped = {}
    for job in config["scrape_configs"]:
        (static,) = job["static_configs"]
        assert static["labels"] == {"service": job["job_name"]}, job["job_name"]
        (scraped[job["job_name"]],) = static["targets"]
    assert len(expected) >= 6, f"too few compose services found: {sorted(expected)}"
    assert scraped == expected


def test_every_alert_has_a_severity_a_summary_and_a_runbook():
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 7
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        for annotation in ("summary", "runbook"):
            assert len(rule["annotations"].get(annotation, "")) >= 20, (rule["alert"], annotation)


# --- Grafana ----------------------------------------------------------------------------


def test_the_provisioned_datasource_and_dashboards_are_where_compose_mounts_them():
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert [(d["uid"], d["type"], d["url"]) for d in datasources] == [
        (DATASOURCE_UID, "prometheus", "http://prometheus:9090")
    ]
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [
        ("file", "/etc/grafana/dashboards")
    ]
    grafana = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file(), home


def test_each_dashboard_has_a_uid_a_title_and_panels_that_query_prometheus_by_uid():
    titles = {}
    for path in DASHBOARD_FILES:
        board = load_dashboard(path)
        assert board.get("uid") and board.get("title"), path.name
        titles[board["uid"]] = board["title"]
        panels = list(_panels(board))
        assert panels, path.name
        assert len({p["id"] for p in panels}) == len(panels), f"{path.name}: duplicate ids"
        for panel in panels:
            where = f"{path.name}: {panel.get('title')!r}"
            assert panel.get("title"), where
            if panel.get("type") == "row":
                continue  # a heading, not a query
            assert panel.get("datasource", {}).get("uid") == DATASOURCE_UID, where
            assert panel.get("targets"), f"{where} has no target"
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), where
                assert target.get("datasource", {}).get("uid", DATASOURCE_UID) == DATASOURCE_UID
    assert titles == {"rate-limiter": "Rate limiter", "pipeline": "Pipeline", "trading": "Trading"}


def test_queries_are_read_from_collapsed_rows_and_query_variables_too():
    board = {
        "panels": [
            {"id": 1, "title": "a", "targets": [{"refId": "A", "expr": "x"}]},
            {"id": 2, "type": "row", "title": "r", "panels": [
                {"id": 3, "title": "b", "targets": [{"refId": "B", "expr": "y"}]},
            ]},
        ],
        "templating": {"list": [
            {"name": "channel", "type": "query", "query": {"query": "label_values(z{a=\"b\"}, c)"}},
            {"name": "old", "type": "query", "query": "query_result(topk(3, w))"},
            {"name": "label", "type": "query", "query": "label_values(c)"},
            {"name": "plain", "type": "query", "query": "v"},
            {"name": "window", "type": "custom", "query": "1s,60s"},
        ]},
    }  # fmt: skip
    assert [q.expr for q in dashboard_queries(board, "d.json")] == [
        "x", "y", 'z{a="b"}', "topk(3, w)", "v",
    ]  # fmt: skip


def test_every_dashboard_query_parses(tmp_path):
    queries = all_dashboard_queries()
    assert len(queries) >= 30
    assert parse_errors(queries, tmp_path) == ""


def test_a_query_that_does_not_parse_is_reported_with_its_dashboard_and_panel(tmp_path):
    board = load_dashboard(GRAFANA_DIR / "dashboards" / "pipeline.json")
    broken = copy.deepcopy(board)
    panel = next(p for p in broken["panels"] if p["title"] == "Consumer lag")
    panel["targets"][0]["expr"] = panel["targets"][0]["expr"].rstrip(")")
    errors = parse_errors(dashboard_queries(broken, "pipeline-copy.json"), tmp_path)
    assert "pipeline-copy.json: panel" in errors and "'Consumer lag' A" in errors, errors
    assert errors.count("could not parse expression") == 1, errors


# --- metric names -----------------------------------------------------------------------


def test_every_metric_the_rules_and_dashboards_read_is_one_the_services_export():
    assert unknown_metrics([*rule_queries(), *all_dashboard_queries()], exported_metrics()) == []


def test_a_misspelled_metric_in_a_dashboard_is_caught(tmp_path):
    source = (GRAFANA_DIR / "dashboards" / "pipeline.json").read_text()
    assert source.count("max by (stream, group) (bus_consumer_lag)") == 1
    copied = tmp_path / "pipeline.json"
    copied.write_text(source.replace("(bus_consumer_lag)", "(bus_consumer_lagg)"))
    queries = dashboard_queries(load_dashboard(copied), "pipeline-copy.json")
    problems = unknown_metrics(queries, exported_metrics())
    assert len(problems) == 1, problems
    assert "'Consumer lag'" in problems[0] and "['bus_consumer_lagg']" in problems[0]


def test_the_exported_names_are_the_ones_prometheus_client_writes():
    exported = exported_metrics()
    # a Counter named "x_total" is exported as x_total, not x_total_total or x
    assert {"bus_published_total", "ratelimit_429_reported_total"} <= exported
    assert not {"bus_published_total_total", "bus_published"} & exported
    # a Histogram as _bucket, _count and _sum; but no _sum when a bucket is negative
    assert {"ratelimit_wait_seconds_bucket", "ratelimit_wait_seconds_count",
            "ratelimit_wait_seconds_sum"} <= exported  # fmt: skip
    assert {"execution_slippage_bps_bucket", "execution_slippage_bps_count"} <= exported
    assert not {"execution_slippage_bps_sum", "execution_slippage_bps"} & exported
    assert {"md_data_age_seconds", "service_info", "risk_entries_allowed"} <= exported


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('max by (channel, window) (ratelimit_utilization_ratio{window="60s"}) > 0.9',
         {"ratelimit_utilization_ratio"}),
        ("histogram_quantile(0.99, sum by (le, stream) (rate(a_bucket[$__rate_interval])))",
         {"a_bucket"}),
        ("sum(rate(a_total[5m] offset 1h)) by (job) / ignoring(x) group_left(y) b",
         {"a_total", "b"}),
        ("a and on (instance) b or c unless d == bool 1e3", {"a", "b", "c", "d"}),
        ('label_replace(a{job=~"x|y",  z!="sum(b)"}, "dst", "$1", "src", "(.*)")', {"a"}),
        ("max_over_time(deriv(a[10m:1m])[1h:]) - Inf * NaN", {"a"}),
        ('{__name__="a", job="x"} + topk(3, b) + count_values("v", c)', {"a", "b", "c"}),
        ("sum without (le) (d) * on() group_left e", {"d", "e"}),
        ("vector(1)", set()),
    ],
)  # fmt: skip
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names
