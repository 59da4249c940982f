"""Container mode: a pod's container runs from its image under runc, held to its
securityContext, with its volumes, limits and in-cluster credentials, and fails where
Kubernetes would make it fail (an image that is not there, a write to a read-only root, a
root user under runAsNonRoot, a memory limit exceeded)."""

from __future__ import annotations

import json
from pathlib import Path

from podrunner_lab import Lab, state_of

import images
import podrunner
import podrunner_containers

OPERATOR_IMAGE = images.OPERATOR.ref

#: The chart's and the worker Deployments' security settings (Pod Security "restricted").
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def exited(runner: podrunner.PodRunner, name: str) -> podrunner.ProcessInfo | None:
    info = state_of(runner, name)
    return info if info is not None and info.last_exit_code is not None else None


def warnings(lab: Lab, pod: str) -> list[str]:
    events = json.loads(
        lab.kubectl("get", "events", "--field-selector", f"involvedObject.name={pod}", "-o", "json")
    )["items"]
    return [e["message"] for e in events if e["type"] == "Warning"]


def test_a_restricted_pod_runs_in_its_image_as_65532_with_nothing_to_escalate(
    lab: Lab, containers: podrunner.PodRunner
) -> None:
    script = (
        "id -u > $OUT/uid; id -g > $OUT/gid; "
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status > $OUT/status; "
        "ls /opt/jobqueue/bin/jobqueue-operator > $OUT/image; "
        "touch /x 2> $OUT/root-write; echo $? >> $OUT/root-write; "
        "touch /tmp/scratch; echo $? > $OUT/tmp"
    )
    lab.apply(
        lab.in_image(
            "restricted",
            script,
            securityContext=RESTRICTED_POD,
            container={"securityContext": RESTRICTED_CONTAINER},
            volumes=[{"name": "tmp", "emptyDir": {}}],
            mounts=[{"name": "tmp", "mountPath": "/tmp"}],
        )
    )
    info = lab.wait("the container to finish", lambda: exited(containers, "restricted"))
    assert info.last_exit_code == 0, info.log_file.read_text()
    out = {p.name: p.read_text().strip() for p in lab.out.iterdir()}
    assert (out["uid"], out["gid"]) == ("65532", "65532")
    assert out["image"] == "/opt/jobqueue/bin/jobqueue-operator"  # the image's, not the host's
    status = dict(line.split(":\t") for line in out["status"].splitlines())
    assert status == {"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
    # the read-only root refuses writes, the emptyDir at /tmp takes them
    assert "Read-only file system" in out["root-write"]
    assert out["root-write"].endswith("1")
    assert out["tmp"] == "0"


def test_a_write_to_the_read_only_root_fails_the_container(lab: Lab, containers: podrunner.PodRunner) -> None:
    """As on a node: the process gets EROFS, the container exits non-zero, and the restart
    policy decides what happens next (here: OnFailure restarts it, with a clean root)."""
    lab.apply(
        lab.in_image(
            "writer",
            "echo $$ >> $OUT/starts; echo data > /var/cache/app.state",
            restart="OnFailure",
            securityContext=RESTRICTED_POD,
            container={"securityContext": RESTRICTED_CONTAINER},
        )
    )
    lab.wait(
        "two failed starts",
        lambda: len((lab.out / "starts").read_text().split()) >= 2 if (lab.out / "starts").exists() else None,
    )
    info = state_of(containers, "writer")
    assert info is not None
    assert info.last_exit_code == 2
    assert "Read-only file system" in info.log_file.read_text()


def test_a_writable_root_is_fresh_for_each_start(lab: Lab, containers: podrunner.PodRunner) -> None:
    script = (
        "if [ -e /var/tmp/seen ]; then echo seen >> $OUT/seen; fi; echo once > /var/tmp/seen; "
        "echo x >> $OUT/starts; exit 1"
    )
    lab.apply(lab.in_image("fresh", script, restart="OnFailure"))
    lab.wait(
        "two starts",
        lambda: len((lab.out / "starts").read_text().split()) >= 2 if (lab.out / "starts").exists() else None,
    )
    assert not (lab.out / "seen").exists()  # the second start did not see the first one's file


def test_an_image_not_built_here_fails_like_a_pull(lab: Lab, containers: podrunner.PodRunner) -> None:
    lab.apply(lab.in_image("nowhere", "true", image="registry.invalid/not-built:1"))
    (message,) = lab.wait("a Warning event", lambda: warnings(lab, "nowhere"))
    assert message.startswith(
        'Failed to pull image "registry.invalid/not-built:1": not built on this machine'
    )
    assert OPERATOR_IMAGE in message  # says what there is
    info = state_of(containers, "nowhere")
    assert info is not None
    assert (info.state, info.starts) == ("pending", 0)


def test_run_as_non_root_refuses_a_root_user(lab: Lab, containers: podrunner.PodRunner) -> None:
    lab.apply(lab.in_image("rooted", "true", securityContext={"runAsNonRoot": True, "runAsUser": 0}))
    (message,) = lab.wait("a Warning event", lambda: warnings(lab, "rooted"))
    assert message == "container has runAsNonRoot and image will run as root"
    info = state_of(containers, "rooted")
    assert info is not None
    assert info.starts == 0


def test_the_memory_limit_kills_the_container(lab: Lab, containers: podrunner.PodRunner) -> None:
    hog = "python3 -c 'b = bytearray(256 * 2**20)' && touch $OUT/survived"
    limits = {"memory": "64Mi", "cpu": "500m"}
    lab.apply(lab.in_image("hog", hog, container={"resources": {"limits": limits}}))
    info = lab.wait("the container to end", lambda: exited(containers, "hog"))
    assert info.last_exit_code == 137  # SIGKILL by the kernel's OOM killer, as kubectl reports OOMKilled
    assert not (lab.out / "survived").exists()


def test_volumes_env_and_in_cluster_credentials(lab: Lab, containers: podrunner.PodRunner) -> None:
    """ConfigMap and Secret volumes, the downward API, env from both, and the ServiceAccount
    token the admission plugin mounts: an in-cluster client authenticates as the pod's
    ServiceAccount with it."""
    whoami = (
        "import os; from lightkube import Client, KubeConfig; "
        "from lightkube.resources.authentication_v1 import SelfSubjectReview; "
        "from lightkube.models.meta_v1 import ObjectMeta; "
        "client = Client(KubeConfig.from_service_account()); "
        "r = client.create(SelfSubjectReview(metadata=ObjectMeta())); "
        "open(os.environ['OUT'] + '/whoami', 'w').write(r.status.userInfo.username)"
    )
    # what kopf's service-account login dials: the Service's name, port 443 (cluster DNS and the
    # Service's virtual IP, emulated), checked against the API server's certificate
    dial = (
        "import os, ssl, urllib.request; "
        "ca = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'; "
        "ctx = ssl.create_default_context(cafile=ca); "
        "r = urllib.request.urlopen('https://kubernetes.default.svc/version', context=ctx); "
        "open(os.environ['OUT'] + '/dial', 'w').write(str(r.status))"
    )
    script = (
        f'python3 -c "{whoami}"; python3 -c "{dial}"; cat /etc/settings/mode > $OUT/mode; '
        "cat /etc/creds/password > $OUT/pw; cat /etc/podinfo/name > $OUT/name; "
        'echo "$LEVEL $PASSWORD $POD_NAME $HOSTNAME" > $OUT/env'
    )
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"mode": "fast", "LEVEL": "3"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "s3cret"},
        },
        lab.in_image(
            "mounted",
            script,
            securityContext=RESTRICTED_POD,
            container={
                "securityContext": RESTRICTED_CONTAINER,
                "envFrom": [{"configMapRef": {"name": "settings"}}],
                "env": [
                    {"name": "OUT", "value": str(lab.out)},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                ],
            },
            volumes=[
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}},
                {
                    "name": "podinfo",
                    "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]},
                },
            ],
            mounts=[
                {"name": "settings", "mountPath": "/etc/settings"},
                {"name": "creds", "mountPath": "/etc/creds"},
                {"name": "podinfo", "mountPath": "/etc/podinfo"},
            ],
        ),
    )
    info = lab.wait("the container to finish", lambda: exited(containers, "mounted"))
    out = {p.name: p.read_text().strip() for p in lab.out.iterdir()}
    assert info.last_exit_code == 0, info.log_file.read_text()
    assert out["whoami"] == f"system:serviceaccount:{lab.namespace}:default"
    assert out["dial"] == "200"
    assert (out["mode"], out["name"], out["env"]) == ("fast", "mounted", "3 s3cret mounted mounted")
    # a 0440 Secret file is not readable by uid 65532 unless its group is: fsGroup owns it
    assert out["pw"] == "s3cret"


def test_a_killed_runner_leaves_containers_that_the_next_one_removes(
    lab: Lab, runner_config: podrunner.Config, built_images: images.Store, tmp_path: Path
) -> None:
    config = podrunner.Config(**{**runner_config.__dict__, "mode": "container", "images": built_images.root})
    proc = podrunner.spawn(config, log_file=tmp_path / "runner.log")
    lab.apply(lab.in_image("orphan", "echo up > $OUT/up; exec sleep 1000", restart="Always"))
    lab.wait("the container to run", (lab.out / "up").exists)
    ids = [c for c in podrunner_containers.list_containers() if c.startswith(f"jq{proc.pid}-")]
    assert len(ids) == 1
    proc.kill()
    proc.wait()
    assert ids[0] in podrunner_containers.list_containers()  # runc's child outlives runc
    with podrunner.PodRunner(config):
        assert ids[0] not in podrunner_containers.list_containers()
