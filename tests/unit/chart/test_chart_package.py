"""The chart as it goes to a registry (`make chart`: helm lint --strict, helm package): the
archive renders exactly what the source folder does, and carries no development tooling."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from unit.chart import chartkit

PACKAGER = chartkit.CHART / "hack" / "package_chart.py"


def test_the_packaged_chart_renders_what_the_folder_renders(helm: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PACKAGER), "--destination", str(tmp_path), "--helm", helm],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    archive = Path(result.stdout.splitlines()[0])
    assert archive.parent == tmp_path
    assert f"helm push {archive} oci://$REGISTRY/charts" in result.stdout
    # the three images of the README's quick start, each under its own name
    for image in ("jobqueue-operator:0.1.0", "glec-jobs:1.4.2", "jobqueue-redis:7"):
        assert f"docker://$REGISTRY/{image}" in result.stdout
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "jobqueue-operator/values.schema.json" in names
    assert "jobqueue-operator/files/jobqueue-alerts.yaml" in names
    assert not [n for n in names if "/hack/" in n]  # (.helmignore)
    values = {
        "redis": {"url": "redis://r:6379/0"},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "monitoringCapabilityCheck": False,
    }
    rendered = [
        chartkit.run_helm(helm, "template", "t", str(chart), "--namespace", "ns", values=values).stdout
        for chart in (chartkit.CHART, archive)
    ]
    assert rendered[0] == rendered[1]
