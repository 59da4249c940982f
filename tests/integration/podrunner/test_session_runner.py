"""The session-wide ``pod_runner`` fixture (tests/conftest.py) runs the project's pods — those
labelled ``app.kubernetes.io/part-of=jobqueue`` — in every namespace, as ``devenv.py up`` does."""

from __future__ import annotations

from podrunner_lab import Lab

import podrunner


def test_project_pods_run_under_the_session_runner(lab: Lab, pod_runner: podrunner.PodRunner) -> None:
    # the project's image (the session runner runs pods in their images where it can)
    record = 'echo "$HOSTNAME" > "$OUT/$POD_NAME.ran"; exec sleep 1000'
    project = lab.in_image(
        "project", record, restart="Always", labels={"app.kubernetes.io/part-of": "jobqueue"}
    )
    other = lab.in_image("other", record, restart="Always")
    for pod in (project, other):
        del pod["metadata"]["labels"]["podrunner.test/run"]  # not for the per-test runners
    lab.apply(other, project)

    lab.wait("the project's pod to run", lambda: lab.files("ran").get("project") == "project")
    assert "other" not in lab.files("ran")
    assert [p.name for p in pod_runner.snapshot() if p.namespace == lab.namespace] == ["project"]


def test_a_namespace_with_a_runner_of_its_own_is_left_to_it(
    lab: Lab, runner: podrunner.PodRunner, pod_runner: podrunner.PodRunner
) -> None:
    # the chart tests run their namespace's pods with a runner of their own (their own job
    # module): the session runner must not start a second process for the same pod
    lab.kubectl("label", "namespace", lab.namespace, f"{podrunner.PRIVATE_NAMESPACE_LABEL}=true")
    record = ["sh", "-c", 'echo started >> "$OUT/$POD_NAME.ran"; exec sleep 1000']
    lab.apply(lab.pod("mine", record, labels={"app.kubernetes.io/part-of": "jobqueue"}))

    lab.wait("the namespace's own runner to run the pod", lambda: lab.files("ran").get("mine"))
    assert [p.name for p in runner.snapshot()] == ["mine"]
    assert [p.name for p in pod_runner.snapshot() if p.namespace == lab.namespace] == []
    assert len(lab.files("ran")["mine"].split()) == 1  # one process, started once
