"""The generated alert rules: complete annotations, one vocabulary, promtool-checked, and a
boundary pair of `promtool test rules` cases (silent just before `for`, firing at it) for
every alert."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from jobqueue_operator.monitoring import alerts, config, generate
from unit.monitoring.vocabulary import known, metric_names_in

ROOT = Path(__file__).resolve().parents[3]
RULE_FILE = ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml"
FIXTURES = sorted((ROOT / "tests" / "alerts").glob("*.test.yaml"))
RULES = yaml.safe_load(generate.alerts_yaml())["groups"][0]["rules"]
REQUIRED = {
    "JobQueueBacklogGrowing",
    "JobQueueOldestJobTooOld",
    "JobQueueFailureRateHigh",
    "JobQueueWorkersNotReady",
    "JobQueueRedisUnreachable",
    "JobQueueOperatorDown",
}


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def test_the_required_alerts_exist() -> None:
    assert {r["alert"] for r in RULES} >= REQUIRED


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_each_alert_is_complete(rule: dict[str, object]) -> None:
    assert seconds(str(rule["for"])) > 0
    labels = rule["labels"]
    assert isinstance(labels, dict)
    assert labels["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["runbook_url"] == f"{config.CONFIG['runbook_base_url']}#{str(rule['alert']).lower()}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_each_alert_uses_only_defined_metric_names(rule: dict[str, object]) -> None:
    used = metric_names_in(str(rule["expr"]))
    assert used
    assert sorted(n for n in used if not known(n)) == []


def test_each_alert_has_a_runbook_section_in_the_docs() -> None:
    docs = (ROOT / "docs" / "monitoring.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^###\s+(\S+)\s*$", docs, flags=re.MULTILINE)}
    missing = [a.name for a in alerts.all_alerts() if a.name.lower() not in headings]
    assert missing == []


def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        ["promtool", "check", "rules", str(RULE_FILE)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    assert FIXTURES
    proc = subprocess.run(
        ["promtool", "test", "rules", *map(str, FIXTURES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(FIXTURES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r["alert"])
def test_each_alert_has_a_boundary_pair(rule: dict[str, object]) -> None:
    """Some test group checks the alert silent at T - 15s and firing at T (one evaluation
    interval apart), so a change of `for`, threshold or window shows up as a failure."""
    pairs = []
    for fixture in FIXTURES:
        doc = yaml.safe_load(fixture.read_text())
        interval = seconds(doc["evaluation_interval"])
        for test in doc["tests"]:
            cases = [c for c in test.get("alert_rule_test", []) if c["alertname"] == rule["alert"]]
            silent = {seconds(c["eval_time"]) for c in cases if not c["exp_alerts"]}
            firing = {seconds(c["eval_time"]) for c in cases if c["exp_alerts"]}
            pairs += [t for t in firing if t - interval in silent]
    assert pairs, f"no boundary pair for {rule['alert']}"


def test_fixtures_test_the_checked_in_rule_file() -> None:
    for fixture in FIXTURES:
        doc = yaml.safe_load(fixture.read_text())
        assert [(fixture.parent / f).resolve() for f in doc["rule_files"]] == [RULE_FILE]
