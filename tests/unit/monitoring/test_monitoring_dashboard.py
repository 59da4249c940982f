"""The generated Grafana dashboard: one vocabulary, every topic, valid PromQL."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import dashboardkit
from jobqueue_operator.monitoring import config, generate
from unit.monitoring.vocabulary import HISTOGRAM_SUFFIXES, NAMES, known, metric_names_in

ROOT = Path(__file__).resolve().parents[3]
BOARD = json.loads(generate.dashboard_json())
QUERIES = dashboardkit.panel_queries(BOARD)
ALL_EXPRS = [e for exprs in QUERIES.values() for e in exprs]


def test_every_metric_name_in_the_dashboard_is_defined_in_metricnames() -> None:
    variables = [v.get("query", "") for v in BOARD["templating"]["list"]]
    used = set().union(*(metric_names_in(e) for e in [*ALL_EXPRS, *variables]))
    assert used
    assert sorted(n for n in used if not known(n)) == []


def test_every_metric_of_the_project_is_on_the_dashboard() -> None:
    used = set().union(*(metric_names_in(e) for e in ALL_EXPRS))
    shown = {n for n in NAMES if n in used or any(n + s in used for s in HISTOGRAM_SUFFIXES)}
    assert sorted(NAMES - shown) == []


@pytest.mark.parametrize(
    "topic",
    [
        "Jobs by state",
        "Oldest queued job age",
        "Throughput",
        "Failures and retries",
        "Wait time (queued → started)",
        "Run time",
        "Worker pods: desired vs ready",
        "Scaling decisions",
        "Lost-job recoveries",
    ],
)
def test_the_dashboard_covers(topic: str) -> None:
    assert QUERIES.get(topic), f"no panel {topic!r}: {sorted(QUERIES)}"


@pytest.mark.parametrize("title", ["Wait time (queued → started)", "Run time"])
def test_latency_panels_show_p50_p95_p99(title: str) -> None:
    quantiles = [re.match(r"histogram_quantile\(([0-9.]+),", e) for e in QUERIES[title]]
    assert [float(q.group(1)) for q in quantiles if q] == [0.5, 0.95, 0.99]


def test_scaling_panel_shows_direction_and_reason() -> None:
    (expr,) = QUERIES["Scaling decisions"]
    assert "direction" in expr and "reason" in expr  # noqa: PT018


def test_variables_datasource_namespace_queue() -> None:
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "queue"]
    assert variables["datasource"]["type"] == "datasource"
    for name in ("namespace", "queue"):
        assert variables[name]["includeAll"] is True
        assert variables[name]["allValue"] == ".*"  # matches series without the label too
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_queue_panels_follow_the_variables() -> None:
    operator_rows = {
        "Redis reachable",
        "Autoscaler cycle",
        "Autoscaler errors",
        "Reconciles",
        "Reconcile duration",
        "Operator version",
    }
    for title, exprs in QUERIES.items():
        for expr in exprs:
            if title in operator_rows:
                assert "$queue" not in expr
            else:
                assert 'namespace=~"$namespace"' in expr, (title, expr)
                assert 'queue=~"$queue"' in expr, (title, expr)


def test_panels_have_unique_ids_a_datasource_and_a_description() -> None:
    panels = BOARD["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("description"), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), panel["title"]  # noqa: PT018


def test_oldest_job_panel_draws_the_alert_threshold() -> None:
    panel = next(p for p in BOARD["panels"] if p["title"] == "Oldest queued job age")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == config.CONFIG["thresholds"]["oldest_job_too_old"]["max_age_seconds"]


def test_identity_and_generated_marker() -> None:
    assert BOARD["uid"] == config.CONFIG["dashboard"]["uid"]
    assert BOARD["title"] == config.CONFIG["dashboard"]["title"]
    assert generate.MARKER in BOARD["description"]


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables replaced by what they expand to)."""

    def concrete(expr: str) -> str:
        return expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$queue", ".*")

    rules = [{"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, e in enumerate(ALL_EXPRS)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
