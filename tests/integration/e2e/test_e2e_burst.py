"""The product as users install it, end to end: ``helm install`` of the chart, the operator pod
held to the chart's RBAC, a JobQueue and a RecurringJob applied with kubectl, real worker and
CronJob pods (the pod runner), real Redis.

``tests/integration/scaling/test_autoscaler.py`` already checks the autoscaler's decisions
(one step up, idle pods first, Events, metrics) against an operator process started by the
test with an admin kubeconfig. Here the same loop runs through the installed product, in a
namespace enforcing the ``restricted`` Pod Security Standard, and is read the way a user
reads it (``kubectl get jq``); meanwhile a RecurringJob ticks every minute: two consecutive
real ticks of the CronJob controller give two jobs, each run once (what
``tests/integration/recurring/test_recurring_ticks.py`` lacks: it stops after one tick).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from e2ekit import NAP, Product, apply_queue, audit, enqueue_naps, queue_body, wait_settled
from opkit import wait_for

import devenv
from integration.recurring import rjkit
from integration.scaling.scalekit import ReplicaWatch, runs
from jobqueue_operator.builders import cronjob

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


def tick_jobs(cluster: devenv.Cluster, namespace: str, name: str) -> list[str]:
    """Names of the Jobs the CronJob controller created for the RecurringJob's ticks."""
    items = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    return sorted(
        j["metadata"]["name"]
        for j in items
        if j["metadata"]["name"].startswith(f"{name}-")
        and any(r["kind"] == "CronJob" for r in j["metadata"].get("ownerReferences") or [])
    )


def get_jq_row(cluster: devenv.Cluster, namespace: str, name: str) -> dict[str, str]:
    """``kubectl get jq NAME`` as a user sees it: column name -> value."""
    header, row = cluster.kubectl("get", "jq", name, "-n", namespace).stdout.splitlines()
    return dict(zip(header.split(), row.split(), strict=True))


def test_the_installed_product_scales_a_burst_up_drains_it_scales_down_and_ticks_once_a_minute(
    cluster: devenv.Cluster, namespace: str, product: Product, redis_conn: redis.Redis
) -> None:
    # the RecurringJob first: its ticks come at minute boundaries while the burst runs
    ticks = apply_queue(
        cluster,
        redis_conn,
        queue_body(
            "ticks", namespace, concurrency=1, per_pod=1, scaleDownDelaySeconds=2, idleSecondsBeforeZero=4
        ),
    )
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            rjkit.recurringjob(
                "every-minute",
                namespace,
                queue="ticks",
                schedule="* * * * *",
                function=NAP,
                args=["tick", 0.2],
            )
        ),
    )
    rjkit.wait_ready(cluster, "every-minute", namespace, status="True", reason="Scheduled")

    burst = apply_queue(
        cluster,
        redis_conn,
        queue_body(
            "burst",
            namespace,
            concurrency=8,
            per_pod=2,
            maxReplicas=4,
            scaleDownDelaySeconds=3,
            idleSecondsBeforeZero=6,
        ),
    )
    with ReplicaWatch(cluster, namespace, "burst-worker") as watch:
        ids = enqueue_naps(redis_conn, burst, "b", 24, 1.0)
        wait_for("4 replicas", lambda: watch.values[-1] == 4, timeout=30)
        wait_settled(redis_conn, burst, len(ids), timeout=120)
        wait_for("back to zero", lambda: watch.values[-1] == 0, timeout=90)
        history = watch.changes()
    assert history[:2] == [0, 4], history  # 24 jobs, 2 per pod, at most 4 pods: one step
    assert history[-1] == 0, history
    result = audit(redis_conn, ids)
    assert result.exactly_once(), result

    def shown_idle() -> dict[str, str] | None:
        row = get_jq_row(cluster, namespace, "burst")
        wanted = {"WORKERS": "0/0", "QUEUED": "0", "RUNNING": "0", "FAILED": "0"}
        return row if all(row.get(k) == v for k, v in wanted.items()) else None

    row: dict[str, Any] = wait_for("`kubectl get jq burst` showing the queue idle", shown_idle, timeout=60)
    assert (row["PRIORITY"], row["CONCURRENCY"]) == ("3", "8"), row

    # two consecutive ticks: two Jobs of the controller, two jobs in Redis, each run once
    wait_for("two ticks", lambda: len(tick_jobs(cluster, namespace, "every-minute")) >= 2, timeout=150)
    rjkit.merge_patch(cluster, "rj", "every-minute", namespace, {"spec": {"suspend": True}})
    names = tick_jobs(cluster, namespace, "every-minute")  # (a tick racing the suspend included)
    tick_ids = [cronjob.job_id(namespace, n) for n in names]
    minutes = [int(n.rsplit("-", 1)[1]) for n in names]
    assert minutes == list(range(minutes[0], minutes[0] + len(minutes))), names  # consecutive, none lost
    wait_settled(redis_conn, ticks, len(tick_ids), timeout=90)
    tick_audit = audit(redis_conn, tick_ids)
    # nap's tag is the same for every tick ("tick"): count the runs of the RecurringJob's jobs
    assert tick_audit.statuses == {"finished": len(tick_ids)}, tick_audit
    assert tick_audit.results == {1: len(tick_ids)}, tick_audit
    assert len(runs(redis_conn, "tick")) == len(tick_ids)
    keys = {k.decode() for k in redis_conn.scan_iter(match="rq:job:rj_*", count=1000)}
    assert keys == {f"rq:job:{i}" for i in tick_ids}  # no job of a tick that had no Job
