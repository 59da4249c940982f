"""values.yaml, values.schema.json and the ci scenarios: documented, strict and lint-clean."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from unit.chart import chartkit

VALUES_FILE = chartkit.CHART / "values.yaml"
SCHEMA = json.loads((chartkit.CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load(VALUES_FILE.read_text())


def leaf_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml, descending only where the schema describes sub-keys."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        out.append(path)
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            out += leaf_paths(value, sub, f"{path}.")
    return out


def schema_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, sub in schema.get("properties", {}).items():
        out.append(f"{prefix}{key}")
        out += schema_paths(sub, f"{prefix}{key}.")
    return out


def test_values_yaml_starts_with_the_schema_modeline() -> None:
    assert VALUES_FILE.read_text().startswith("# yaml-language-server: $schema=values.schema.json\n")


def test_every_value_is_in_the_schema_and_every_schema_key_has_a_default() -> None:
    in_values = set(leaf_paths(VALUES, SCHEMA))
    in_schema = set(schema_paths(SCHEMA)) - {"global"}  # Helm's own key, never set here
    assert in_values == in_schema


def test_every_object_in_the_schema_refuses_unknown_keys() -> None:
    def walk(node: dict[str, Any], path: str) -> list[str]:
        loose = []
        if "properties" in node and node.get("additionalProperties") is not False:
            loose.append(path or "<root>")
        for key, sub in node.get("properties", {}).items():
            loose += walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            loose += walk(node["items"], f"{path}[]")
        return loose

    assert walk(SCHEMA, "") == []


def key_lines(text: str) -> dict[str, int]:
    """``{dotted.path: line index}`` of every mapping key in a block-style YAML file."""
    out: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(text.splitlines()):
        m = re.match(r'^(\s*)"?([A-Za-z0-9_]+)"?:', line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        out.setdefault(".".join(k for _, k in stack), i)
    return out


def test_every_value_has_a_helm_docs_comment() -> None:
    """Every key has a `# --` comment above it (as helm-docs needs), except sections whose
    sub-keys are each documented."""
    lines = VALUES_FILE.read_text().splitlines()
    where = key_lines(VALUES_FILE.read_text())

    def documented(path: str) -> bool:
        i = where[path] - 1
        while i >= 0 and lines[i].lstrip().startswith("#") and not lines[i].lstrip().startswith("# --"):
            i -= 1
        return i >= 0 and lines[i].lstrip().startswith("# --")

    def undocumented(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in values.items():
            path, sub = f"{prefix}{key}", schema["properties"][key]
            if documented(path):
                continue
            if isinstance(value, dict) and "properties" in sub:
                out += undocumented(value, sub, f"{path}.")
            else:
                out.append(path)
        return out

    assert undocumented(VALUES, SCHEMA) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"replicaCount": 0}, "minimum"),
        ({"podAntiAffinity": "always"}, "podAntiAffinity"),
        ({"leaderElection": {"leaseDurationSeconds": 2.5}}, "leaseDurationSeconds"),
        ({"image": {"pullpolicy": "Always"}}, "additional properties 'pullpolicy' not allowed"),
        ({"rbac": {"clusterWide": True}}, "additional properties 'clusterWide' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"operator": {"logFormat": "xml"}}, "logFormat"),
        ({"watchNamespaces": ["Team_A"]}, "does not match pattern"),
        ({"redis": {"url": "http://redis:6379"}}, "does not match pattern"),
        ({"redis": {"url": "sentinel://s1:26379/mymaster"}}, "does not match pattern"),
        ({"priorityClasses": {"values": {"1": 2000000000}}}, "maximum"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "does not match pattern"),
        ({"autoscaler": {"pollInterval": 0.05}}, "minimum: got 0.05, want 0.1"),
        ({"autoscaler": {"pollInterval": 61}}, "maximum: got 61, want 60"),
        ({"autoscaler": {"pollInterval": "1s"}}, "want number"),
        ({"autoscaler": {"workerBudget": -1}}, "minimum: got -1, want 0"),
        ({"autoscaler": {"workerBudget": 2.5}}, "want null or integer"),
        ({"autoscaler": {"enabled": False}}, "additional properties 'enabled' not allowed"),
    ],
)
def test_schema_refuses_bad_values(
    render_error: Callable[[dict[str, Any]], str], values: dict[str, Any], message: str
) -> None:
    assert message in render_error(values)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "rediss+sentinel://jq:pw@s1/mymaster?ssl_ca_certs=/ca.pem",
    ],
)
def test_sentinel_urls_are_accepted(render: Callable[..., list[dict[str, Any]]], url: str) -> None:
    secrets = [o for o in render({"redis": {"url": url}}) if o["kind"] == "Secret"]
    assert [s["stringData"] for s in secrets] == [{"url": url}]


def test_a_url_and_an_existing_secret_together_are_refused(
    render_error: Callable[[dict[str, Any]], str],
) -> None:
    error = render_error({"redis": {"url": "redis://r:6379/0", "existingSecret": "mine"}})
    assert "set redis.url or redis.existingSecret, not both" in error


@pytest.mark.parametrize(
    ("variable", "value_to_use"),
    [
        ("JOBQUEUE_POLL_INTERVAL", "autoscaler.pollInterval"),
        ("JOBQUEUE_REDIS_URL", "redis.url or redis.existingSecret"),
        ("POD_NAME", "(the pod's own name)"),
    ],
)
def test_extra_env_may_not_repeat_what_the_chart_sets(
    render_error: Callable[[dict[str, Any]], str], variable: str, value_to_use: str
) -> None:
    error = render_error({"operator": {"extraEnv": [{"name": variable, "value": "0"}]}})
    assert f"operator.extraEnv: {variable} is set by the chart; set the value {value_to_use} instead" in error


def test_every_variable_the_chart_sets_is_refused_in_extra_env(
    render: chartkit.Render, render_error: Callable[[dict[str, Any]], str]
) -> None:
    # the template keeps its own list of what it sets (with the value to use instead): it
    # must not fall behind the env it renders, optional variables included
    values = {"operator": {"workerImagePullPolicy": "Always"}, "autoscaler": {"workerBudget": 10}}
    env = chartkit.container_env(chartkit.one(render(values), "Deployment"))
    assert {"JOBQUEUE_WORKER_IMAGE_PULL_POLICY", "JOBQUEUE_WORKER_BUDGET"} <= env.keys()
    for variable in env:
        error = render_error(
            {**values, "operator": {**values["operator"], "extraEnv": [{"name": variable, "value": "x"}]}}
        )
        assert f"operator.extraEnv: {variable} is set by the chart" in error


def test_extra_env_adds_what_the_chart_does_not_set(render: chartkit.Render) -> None:
    objects = render({"operator": {"extraEnv": [{"name": "JOBQUEUE_LEASE_SECONDS", "value": "30"}]}})
    env = chartkit.container_env(chartkit.one(objects, "Deployment"))
    assert env["JOBQUEUE_LEASE_SECONDS"] == "30"


def test_there_are_ci_scenarios() -> None:
    names = {p.name for p in chartkit.CI_VALUES}
    assert {
        "namespaced-values.yaml",
        "cluster-monitoring-values.yaml",
        "existing-secret-values.yaml",
    } <= names


@pytest.mark.parametrize(
    "values_file", [None, *chartkit.CI_VALUES], ids=lambda p: p.name if p else "defaults"
)
def test_helm_lint_strict_is_clean(helm: str, values_file: Any) -> None:
    args = ["lint", "--strict", str(chartkit.CHART)]
    if values_file:
        args += ["-f", str(values_file)]
    proc = chartkit.run_helm(helm, *args)
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout
    assert "[ERROR]" not in proc.stdout
