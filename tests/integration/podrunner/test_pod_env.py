"""A pod's process gets the environment the kubelet would give its container, and nothing of
the runner's own; pods outside the selection, or on nodes that are not kwok's, are left alone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from podrunner_lab import Lab, state_of

import podrunner

DUMP = (
    "import json, os, sys; "
    "json.dump({'env': dict(os.environ), 'argv': sys.argv[1:], 'prefix': sys.prefix, 'cwd': os.getcwd()}, "
    "open(os.path.join(os.environ['OUT'], os.environ['POD_NAME'] + '.json'), 'w'))"
)


def secret(name: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def configmap(name: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def dump_of(lab: Lab, app: str) -> dict[str, object]:
    dumps = lab.wait(
        f"an environment dump from a pod of {app}",
        lambda: [json.loads(p.read_text()) for p in lab.out.glob(f"{app}-*.json")],
    )
    result: dict[str, object] = dumps[0]
    return result


def test_deployment_process_runs_with_the_pods_environment(
    lab: Lab, runner: podrunner.PodRunner, runner_config: podrunner.Config
) -> None:
    lab.apply(
        secret("creds", {"password": "s3cret"}),
        secret("more", {"EXTRA": "x", "OVERRIDE": "from-secret"}),
        configmap("settings", {"MODE": "fast", "LEVEL": "3"}),
        lab.deployment(
            "envdump",
            ["python", "-c", DUMP, "$(POD_NAME)", "$$(POD_NAME)", "$(UNDEFINED)"],
            labels={"tier": "backend"},
            annotations={"note": "hello"},
            automountServiceAccountToken=False,
            env=[
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
                {
                    "name": "NO_SECRET",
                    "valueFrom": {"secretKeyRef": {"name": "nosuch", "key": "k", "optional": True}},
                },
                {
                    "name": "NO_KEY",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nokey", "optional": True}},
                },
                {"name": "GREETING", "value": "hi $(POD_NAME) in $(POD_NAMESPACE), $$(POD_NAME), $(NOPE)"},
                {"name": "OVERRIDE", "value": "from-env"},
            ],
            container={
                "envFrom": [
                    {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "more"}},
                    {"configMapRef": {"name": "nosuch", "optional": True}},
                ]
            },
        ),
    )
    dump = dump_of(lab, "envdump")
    env = dump["env"]
    assert isinstance(env, dict)
    pod = json.loads(lab.kubectl("get", "pod", env["POD_NAME"], "-o", "json"))

    # the downward API
    assert env["POD_NAME"] == pod["metadata"]["name"]
    assert env["POD_NAMESPACE"] == lab.namespace
    assert env["TIER"] == "backend"
    assert env["NOTE"] == "hello"
    assert env["NODE"] == pod["spec"]["nodeName"]
    assert env["SA"] == "default"
    assert env["POD_IP"] == pod["status"]["podIP"] != ""
    # Secrets and ConfigMaps, optional references left out, env winning over envFrom
    assert env["PASSWORD"] == "s3cret"
    assert env["LEVEL"] == "3"
    assert "NO_SECRET" not in env
    assert "NO_KEY" not in env
    assert env["CFG_MODE"] == "fast"
    assert env["CFG_LEVEL"] == "3"
    assert env["EXTRA"] == "x"
    assert env["OVERRIDE"] == "from-env"
    # $(VAR) expansion in values and in args
    assert env["GREETING"] == f"hi {env['POD_NAME']} in {lab.namespace}, $(POD_NAME), $(NOPE)"
    assert dump["argv"] == [env["POD_NAME"], "$(POD_NAME)", "$(UNDEFINED)"]
    # the base environment: the project's venv, the extra PYTHONPATH, nothing of the runner's
    assert env["PATH"].split(":")[0] == str(runner_config.venv / "bin")
    assert Path(str(dump["prefix"])) == runner_config.venv
    assert env["PYTHONPATH"] == str(runner_config.pythonpath[0])
    assert env["HOSTNAME"] == env["POD_NAME"]
    assert dump["cwd"] == str(runner_config.workdir)
    assert "PYTEST_CURRENT_TEST" not in env  # set in the runner's (this) process
    assert "KUBECONFIG" not in env  # automountServiceAccountToken: false


def test_a_missing_secret_holds_the_pod_until_it_exists(lab: Lab, runner: podrunner.PodRunner) -> None:
    lab.apply(
        lab.pod(
            "late",
            ["python", "-c", DUMP],
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late-secret", "key": "token"}}}],
        )
    )
    info = lab.wait("the pod to be known to the runner", lambda: state_of(runner, "late"))
    assert info.state == "pending"
    log = lab.wait(
        "the wait to be logged in the pod's log", lambda: info.log_file.exists() and info.log_file.read_text()
    )
    assert "late-secret" in log
    assert not (lab.out / "late.json").exists()

    lab.apply(secret("late-secret", {"token": "finally"}))
    lab.wait("the process to start once the Secret exists", (lab.out / "late.json").exists)
    dump = json.loads((lab.out / "late.json").read_text())
    assert dump["env"]["TOKEN"] == "finally"


def test_only_selected_pods_on_kwok_nodes_are_run(lab: Lab, runner: podrunner.PodRunner) -> None:
    node = f"plain-{lab.namespace}"[:63]
    # kwok manages every node (--manage-all-nodes) and makes this one Ready too: the taint keeps
    # the scheduler from placing other pods — "control", or other tests' — on it; "elsewhere"
    # names it directly (nodeName bypasses the scheduler)
    lab.cluster.kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node},
                "spec": {"taints": [{"key": "podrunner.test/plain", "effect": "NoSchedule"}]},
            }
        ),
    )
    try:
        unlabelled = lab.pod("unlabelled", ["python", "-c", DUMP])
        del unlabelled["metadata"]["labels"]
        lab.apply(unlabelled, lab.pod("elsewhere", ["python", "-c", DUMP], nodeName=node))
        lab.apply(lab.pod("control", ["python", "-c", DUMP]))

        lab.wait("the selected pod on a kwok node to run", (lab.out / "control.json").exists)
        # events are handled in order: the unlabelled pod, created first, was never delivered
        assert state_of(runner, "unlabelled") is None
        info = lab.wait(
            "the pod on a plain node to be judged",
            lambda: (i := state_of(runner, "elsewhere")) and i.state != "pending" and i,
        )
        assert info.state == "ignored"
        assert info.starts == 0
        assert not (lab.out / "unlabelled.json").exists()
        assert not (lab.out / "elsewhere.json").exists()
    finally:
        lab.cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def test_listening_ports_get_a_free_host_port_per_pod_and_are_published(
    lab: Lab, runner: podrunner.PodRunner, runner_config: podrunner.Config
) -> None:
    # Two replicas both asking for :9100 would collide on the shared host network.
    script = 'echo "$JOBQUEUE_METRICS_PORT $JOBQUEUE_HEALTH_PORT" > "$OUT/$POD_NAME.ports"; exec sleep 600'
    lab.apply(
        lab.deployment(
            "svc",
            ["sh", "-c", script],
            replicas=2,
            container={
                "env": [
                    {"name": "OUT", "value": str(lab.out)},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "JOBQUEUE_METRICS_PORT", "value": "9100"},
                    {"name": "JOBQUEUE_HEALTH_PORT", "value": "8081"},
                ]
            },
        )
    )
    seen = lab.wait("both processes", lambda: len(p := lab.files("ports")) == 2 and p)
    ports = [int(x) for line in seen.values() for x in line.split()]
    assert len(set(ports)) == 4
    assert not {9100, 8081} & set(ports)

    def published() -> list[dict[str, object]]:
        targets = json.loads((runner_config.state_dir / "prometheus-targets.json").read_text())
        return targets if len(targets) == 2 else []

    targets = lab.wait("the scrape targets", published)
    by_pod = {t["labels"]["pod"]: t["targets"][0] for t in targets}  # type: ignore[index]
    for pod, line in seen.items():
        assert by_pod[pod] == f"127.0.0.1:{line.split()[0]}"
    info = {p.name: p for p in runner.snapshot()}
    for pod, line in seen.items():
        assert info[pod].ports["JOBQUEUE_METRICS_PORT"] == int(line.split()[0])
