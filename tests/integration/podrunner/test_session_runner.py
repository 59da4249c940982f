"""The session-wide ``pod_runner`` fixture (tests/conftest.py) runs the project's pods — those
labelled ``app.kubernetes.io/part-of=jobqueue`` — in every namespace, as ``devenv.py up`` does."""

from __future__ import annotations

from podrunner_lab import Lab

import podrunner


def test_project_pods_run_under_the_session_runner(lab: Lab, pod_runner: podrunner.PodRunner) -> None:
    record = ["sh", "-c", 'echo "$HOSTNAME" > "$OUT/$POD_NAME.ran"; exec sleep 1000']
    project = lab.pod("project", record, labels={"app.kubernetes.io/part-of": "jobqueue"})
    other = lab.pod("other", record)
    for pod in (project, other):
        del pod["metadata"]["labels"]["podrunner.test/run"]  # not for the per-test runners
    lab.apply(other, project)

    lab.wait("the project's pod to run", lambda: lab.files("ran").get("project") == "project")
    assert "other" not in lab.files("ran")
    assert [p.name for p in pod_runner.snapshot() if p.namespace == lab.namespace] == ["project"]
