"""The permissions table of docs/operator.md is generated from the chart's RBAC and cannot drift."""

from __future__ import annotations

import subprocess
import sys

from unit.chart import chartkit

RENDERER = chartkit.CHART / "hack" / "render_permissions.py"
DOCS = chartkit.ROOT / "docs" / "operator.md"


def test_the_checked_in_table_is_what_the_chart_grants(helm: str) -> None:
    result = subprocess.run(
        [sys.executable, str(RENDERER), "--check", "--helm", helm],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_rule_of_the_operator_is_a_row(render: chartkit.Render) -> None:
    """Each (group, resource, verb) the operator's roles grant appears in the table's rows."""
    objects = render({"watchNamespaces": ["team-a"]})
    table = DOCS.read_text().split("<!-- permissions:begin -->", 1)[1].split("<!-- permissions:end -->")[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| `")
    ]
    shown = {
        (group, resource, verb)
        for group, resources, _, verbs, _, _ in rows
        for resource in resources.split(", ")
        for verb in verbs.split(", ")
    }
    operator_roles = {f"t-jobqueue-operator{suffix}" for suffix in ("", "-discovery", "-leader-election")}
    granted = [
        (group, resource, verb)
        for role in chartkit.kinds(objects, "Role") + chartkit.kinds(objects, "ClusterRole")
        if role["metadata"]["name"] in operator_roles
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]
    assert granted
    for group, resource, verb in granted:
        row = (f"`{group}`" if group else '`""` (core)', f"`{resource}`", verb)
        assert row in shown, row
