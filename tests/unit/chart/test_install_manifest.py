"""manifests/install.yaml is the chart rendered with default values, and is up to date."""

from __future__ import annotations

import subprocess
import sys

from unit.chart import chartkit

INSTALL = chartkit.ROOT / "manifests" / "install.yaml"
RENDERER = chartkit.CHART / "hack" / "render_install.py"


def test_install_manifest_is_up_to_date(helm: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(RENDERER), "--check", "--helm", helm],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_install_manifest_says_how_it_was_made_and_holds_everything() -> None:
    text = INSTALL.read_text()
    assert text.startswith("# jobqueue-operator: plain install manifest")
    assert "python helm/jobqueue-operator/hack/render_install.py" in text.split("---")[0]
    objects = chartkit.load_all(text)
    found = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("Namespace", "jobqueue-system"),
        ("CustomResourceDefinition", "jobqueues.jobqueue.glec.io"),
        ("CustomResourceDefinition", "recurringjobs.jobqueue.glec.io"),
        ("ServiceAccount", "jobqueue-operator"),
        ("ClusterRole", "jobqueue-operator"),
        ("ClusterRoleBinding", "jobqueue-operator"),
        ("Deployment", "jobqueue-operator"),
        ("Service", "jobqueue-operator-metrics"),
    } <= found
    assert not [o for o in objects if o["kind"] == "Pod"]  # no helm test hook
    for obj in objects:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "jobqueue-system", obj["kind"]
