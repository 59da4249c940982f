"""The checked-in dashboard and rule files are exactly what the generator makes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobqueue_operator.monitoring import generate

ROOT = Path(__file__).resolve().parents[3]


def test_checked_in_files_are_up_to_date() -> None:
    assert generate.drift(ROOT) == [], "generated monitoring files are stale: run `make generate`"


def test_generation_is_deterministic() -> None:
    assert generate.render() == generate.render()


def test_every_output_says_it_is_generated() -> None:
    rendered = generate.render()
    assert set(rendered) == {
        f"{d}/{f}"
        for d in ("manifests/monitoring", "helm/jobqueue-operator/files")
        for f in ("jobqueue-dashboard.json", "jobqueue-alerts.yaml")
    }
    for rel, text in rendered.items():
        if rel.endswith(".yaml"):
            assert text.startswith(f"# {generate.MARKER}\n"), rel
        else:
            assert generate.MARKER in text, rel


def test_the_command_line_check_mode(tmp_path: Path) -> None:
    """`--check` passes on the repository and fails (naming the file) on a stale copy."""
    cmd = [sys.executable, "-m", "jobqueue_operator.monitoring", "--check"]
    ok = subprocess.run([*cmd, "--root", str(ROOT)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "helm" / "jobqueue-operator").mkdir(parents=True)
    (tmp_path / "helm" / "jobqueue-operator" / "Chart.yaml").write_text("name: x\n")
    stale = subprocess.run([*cmd, "--root", str(tmp_path)], capture_output=True, text=True, check=False)
    assert stale.returncode == 1
    assert "manifests/monitoring/jobqueue-alerts.yaml is out of date: run `make generate`" in stale.stderr
    written = subprocess.run([*cmd[:-1], "--root", str(tmp_path)], capture_output=True, text=True, check=True)
    assert "wrote helm/jobqueue-operator/files/jobqueue-dashboard.json" in written.stdout
    assert (tmp_path / "manifests" / "monitoring" / "jobqueue-alerts.yaml").read_text() == (
        ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml"
    ).read_text()
