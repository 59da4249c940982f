"""docs/troubleshooting.md has a row for every condition reason the reference pages list and
for every shipped alert, and each of them says what to do (not only what it means)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PAGE = (ROOT / "docs" / "troubleshooting.md").read_text()


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def problem_reasons() -> set[str]:
    """False reasons of the JobQueue conditions table (operator.md) and the RecurringJob
    Ready reasons (recurring-jobs.md)."""
    operator = (ROOT / "docs" / "operator.md").read_text()
    reasons = {
        name
        for _, status, reason, _ in table_rows(operator, "| type | status | reason |")
        if status == "False"
        for name in re.findall(r"`([A-Za-z]+)`", reason)
    }
    recurring = (ROOT / "docs" / "recurring-jobs.md").read_text()
    reasons |= {re.findall(r"`([A-Za-z]+)`", row[0])[0] for row in table_rows(recurring, "| reason | what |")}
    return reasons


def alerts() -> set[str]:
    rules = yaml.safe_load((ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml").read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def page_rows() -> dict[str, str]:
    """``{name: what to do}`` of every table row of the page."""
    rows = {}
    for line in PAGE.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 2:
            rows[re.findall(r"`([A-Za-z]+)`", cells[0])[0]] = cells[1]
    return rows


def test_the_reference_pages_list_reasons_and_alerts_at_all() -> None:
    assert {"NoRedisConfigured", "QueueNameConflict", "QueueMissing", "InvalidSpec"} <= problem_reasons()
    assert "JobQueueOperatorDown" in alerts()


@pytest.mark.parametrize("name", sorted(problem_reasons() | alerts()))
def test_every_reason_and_alert_has_a_row_with_something_to_do(name: str) -> None:
    rows = page_rows()
    assert name in rows, f"docs/troubleshooting.md has no row for {name}"
    assert len(rows[name].split()) >= 8, f"{name}: say what to do, not only what it is"
