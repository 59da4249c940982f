"""The installed product in container mode: the operator pod runs inside the image ``make
image`` builds, the workers inside a worker image built FROM it (tests/testimages.py), under
runc, held to the chart's and the worker Deployments' securityContext; a worker killed by its
memory limit loses nothing.

The session pod runner runs in container mode where runc works (tests/conftest.py): these
tests fail, never skip, elsewhere — they assert what container mode does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from e2ekit import Product, apply_queue, audit, enqueue_naps, queue_body, wait_settled
from opkit import wait_for

import devenv
import podrunner
import podrunner_containers
from integration.scaling.scalekit import JOBS, done, runs
from jobqueue import JobSpec, enqueue_many

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


def in_container(info: podrunner.ProcessInfo) -> dict[str, str]:
    """What the kernel says about the container of a running pod: its PID 1's uid, root
    filesystem (read-only or not) and the image it runs (by what is in its root)."""
    assert info.container is not None, f"{info.name} does not run in a container"
    pid = podrunner_containers.init_pid(info.container)
    assert pid is not None
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    root = next(
        line.split()
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    return {
        "uid": status["Uid"].split()[0],
        "root": root[5].split(",")[0],
        "scalejobs": str(Path(f"/proc/{pid}/root/app/integration/scaling/scalejobs.py").exists()),
        "operator": str(Path(f"/proc/{pid}/root/opt/jobqueue/bin/jobqueue-operator").exists()),
    }


def test_the_operator_and_the_workers_run_in_their_images_as_65532_and_drain_a_burst(
    cluster: devenv.Cluster,
    namespace: str,
    product: Product,
    redis_conn: redis.Redis,
    pod_runner: podrunner.PodRunner,
) -> None:
    operator = product.operator_process()
    assert operator is not None
    assert in_container(operator) == {"uid": "65532", "root": "ro", "scalejobs": "False", "operator": "True"}

    queue = apply_queue(
        cluster,
        redis_conn,
        queue_body("burst", namespace, concurrency=6, per_pod=2, maxReplicas=3, scaleDownDelaySeconds=30),
    )
    ids = enqueue_naps(redis_conn, queue, "c", 60, 0.2)
    seen: dict[str, dict[str, str]] = {}

    def workers_seen() -> bool:  # while they run: each worker pod's container, once
        for info in pod_runner.snapshot():
            if (
                info.namespace == namespace
                and info.name.startswith("burst-worker")
                and info.container
                and info.name not in seen
            ):
                seen[info.name] = in_container(info)
        return len(seen) >= 3

    wait_for("3 worker containers", workers_seen, timeout=60)
    wait_settled(redis_conn, queue, len(ids), timeout=120)
    result = audit(redis_conn, ids)
    assert result.exactly_once(), str(result)
    assert all(
        w == {"uid": "65532", "root": "ro", "scalejobs": "True", "operator": "True"} for w in seen.values()
    ), seen


def test_a_worker_killed_by_its_memory_limit_is_restarted_and_its_job_runs_again(
    cluster: devenv.Cluster,
    namespace: str,
    product: Product,
    redis_conn: redis.Redis,
    pod_runner: podrunner.PodRunner,
) -> None:
    body = queue_body("hungry", namespace, concurrency=1, per_pod=1, attempts=3, minReplicas=1)
    body["spec"]["worker"]["resources"] = {"limits": {"memory": "128Mi"}}
    queue = apply_queue(cluster, redis_conn, body)
    enqueue_many(queue, [JobSpec(f"{JOBS}.hog_once", ["big", 400], job_id="big")], connection=redis_conn)

    def killed() -> podrunner.ProcessInfo | None:
        return next(
            (
                p
                for p in pod_runner.snapshot()
                if p.namespace == namespace and p.name.startswith("hungry-worker") and p.last_exit_code == 137
            ),
            None,
        )

    victim = wait_for("the worker OOM-killed (exit 137)", killed, timeout=60)
    wait_settled(redis_conn, queue, 1, timeout=120)
    result = audit(redis_conn, ["big"])
    assert result.statuses == {"finished": 1}, str(result)
    assert len(runs(redis_conn, "big")) == 2  # the killed run, and the one that finished
    assert len(done(redis_conn, "big")) == 1
    restarted = next(p for p in pod_runner.snapshot() if p.name == victim.name)
    assert restarted.starts >= 2  # the same pod, its container started again (restartPolicy Always)
