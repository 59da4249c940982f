"""The README's quick start, as written, on a dev cluster of its own with the real images.

The commands come from the README's block between ``<!-- quickstart … -->`` and
``<!-- /quickstart -->`` (so the README and this test cannot drift) and run one by one in a
shell, with ``REGISTRY=registry.example`` — the name ``make image`` tags its images with —
and two stand-ins for what the dev environment lacks, each named here:

* no OCI registry: ``oci://$REGISTRY/charts/jobqueue-operator --version 0.1.0`` becomes the
  archive ``make chart`` makes (helm/jobqueue-operator/hack/package_chart.py);
* no kubelet to serve ``kubectl exec``: ``kubectl exec -n NS deploy/NAME -- CMD…`` runs CMD
  with ``runc exec`` in the container of a running pod of that Deployment (the pod runner's),
  with the container's own environment, as the kubelet would.

Everything else is real: helm installs the chart with the bundled Redis, the operator and
the workers run from their images under runc, the workers reach the bundled Redis through
the pod runner's Service stand-in by the name in the chart's Secret, and the last command's
output must show the five jobs finished. A cluster of its own, because the quick start
installs the chart cluster-wide (a ClusterRole, the CRDs) into fixed namespaces.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opkit import wait_for

import devenv
import images
import podrunner
import podrunner_containers

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- quickstart:[^>]*-->\n```sh\n(.*?)```\n<!-- /quickstart -->", re.S)
OCI_CHART = "oci://$REGISTRY/charts/jobqueue-operator --version 0.1.0"
REGISTRY = images.OPERATOR.ref.split("/", 1)[0]
PACKAGER = ROOT / "helm/jobqueue-operator/hack/package_chart.py"


def quickstart_commands(readme: str) -> list[str]:
    """The README's quick-start commands, continuation lines joined."""
    found = BLOCK.search(readme)
    assert found, "README.md has no <!-- quickstart --> block"
    return [line for line in found[1].replace("\\\n", " ").splitlines() if line.strip()]


def test_the_readme_block_is_what_this_test_runs() -> None:
    commands = quickstart_commands((ROOT / "README.md").read_text())
    assert commands[0].startswith("helm install")
    assert OCI_CHART in commands[0]
    assert "--set redis.bundled=true" in commands[0]
    assert any(c.startswith("kubectl exec") for c in commands)
    assert "jobqueue stats" in commands[-1]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[devenv.Cluster]:
    with devenv.session_cluster(nodes=2, suffix="qs") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def own_runner(
    own_cluster: devenv.Cluster, built_images: images.Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[podrunner.PodRunner]:
    config = podrunner.Config(
        kubeconfig=own_cluster.kubeconfig,
        mode="container",
        images=built_images.root,
        state_dir=tmp_path_factory.mktemp("quickstart-pods"),
        shutdown_grace=10.0,
    )
    with podrunner.PodRunner(config) as runner:
        yield runner


class Shell:
    """Runs the quick start's commands against ``cluster``, with the two stand-ins above."""

    def __init__(self, cluster: devenv.Cluster, runner: podrunner.PodRunner, chart: Path) -> None:
        self.cluster = cluster
        self.runner = runner
        self.chart = chart
        self.env = {**cluster.binaries.env(), "KUBECONFIG": str(cluster.kubeconfig), "REGISTRY": REGISTRY}

    def run(self, command: str, timeout: float = 600) -> str:
        if command.startswith("kubectl exec"):
            return self.kubectl_exec(command, timeout)
        command = command.replace(OCI_CHART, str(self.chart))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"{command}\nexit {done.returncode}\n{done.stdout}{done.stderr}\n{self.logs()}"
        )
        return done.stdout

    def kubectl_exec(self, command: str, timeout: float) -> str:
        words = shlex.split(command, comments=True)
        argv = words[words.index("--") + 1 :]
        options = words[2 : words.index("--")]
        namespace = options[options.index("-n") + 1]
        target = next(w for w in options if w.startswith("deploy/")).removeprefix("deploy/")
        pods = {p["metadata"]["name"] for p in self.cluster_pods(namespace, target)}

        def running() -> podrunner.ProcessInfo | None:
            return next(
                (
                    p
                    for p in self.runner.snapshot()
                    if p.namespace == namespace and p.name in pods and p.state == "running" and p.container
                ),
                None,
            )

        info = wait_for(f"a running pod of deploy/{target}", running, timeout=120)
        assert info.container is not None
        done = subprocess.run(
            podrunner_containers.exec_argv(info.container, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def cluster_pods(self, namespace: str, deployment: str) -> list[dict[str, Any]]:
        def listed() -> list[dict[str, Any]] | None:
            out = self.cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
            return [
                p for p in json.loads(out)["items"] if p["metadata"]["name"].startswith(f"{deployment}-")
            ] or None

        found: list[dict[str, Any]] = wait_for(f"pods of deploy/{deployment}", listed, timeout=120)
        return found

    def logs(self) -> str:
        """The tails of every pod's log, for a failure's message."""
        out = []
        for info in self.runner.snapshot():
            if info.log_file.exists():
                out.append(
                    f"--- {info.namespace}/{info.name} ({info.state})\n"
                    + "\n".join(info.log_file.read_text().splitlines()[-15:])
                )
        return "\n".join(out)


def finished(stats_output: str, queue: str) -> int | None:
    """The FINISHED column of ``queue``'s row in ``jobqueue stats -o wide`` output."""
    lines = [ln for ln in stats_output.splitlines() if ln.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    for line in lines[1:]:
        row = dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=False))
        if row.get("QUEUE") == queue:
            return int(row["FINISHED"])
    return None


def test_the_readme_quick_start_as_written_runs_five_jobs_through_the_bundled_redis(
    own_cluster: devenv.Cluster, own_runner: podrunner.PodRunner, tmp_path: Path
) -> None:
    chart = make_chart(own_cluster.binaries.path("helm"), tmp_path)
    shell = Shell(own_cluster, own_runner, chart)
    *steps, last = quickstart_commands((ROOT / "README.md").read_text())
    for command in steps:
        shell.run(command)

    # the last command, as written, until it shows the five jobs finished (they take ~50 ms each)
    def five_finished() -> str | None:
        out = shell.run(last)
        return out if finished(out, "ei:update") == 5 else None

    output = wait_for("jobqueue stats to show 5 finished jobs", five_finished, timeout=120)
    print(output)  # (pytest -s or -rP shows it)
    assert finished(output, "ei:update") == 5, output
    # the bundled Redis is where they ran: the Secret's URL names the Service
    secret = own_cluster.kubectl(
        "get", "secret", "-n", "jobqueue-system", "jobqueue-operator-redis", "-o", "jsonpath={.data.url}"
    ).stdout
    assert "@jobqueue-operator-redis.jobqueue-system.svc:6379/" in base64.b64decode(secret).decode()
    redis_pods = [p for p in own_runner.snapshot() if p.name.startswith("jobqueue-operator-redis-")]
    assert [p.state for p in redis_pods] == ["running"]


def make_chart(helm: str, destination: Path) -> Path:
    """``make chart``'s archive (helm lint --strict, helm package), as the registry would hold it."""
    done = subprocess.run(
        [sys.executable, str(PACKAGER), "--destination", str(destination), "--helm", helm],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.splitlines()[0])
