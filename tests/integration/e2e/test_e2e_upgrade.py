"""`helm upgrade` from the previous chart to this one while a queue works (issue 22): no job
lost or run twice, the worker pods not restarted (the worker Deployment's template does not
change), the operator live again after it (were its pod template to change, its two replicas
would roll one by one under leader election).

The previous chart is :data:`PREVIOUS`, the chart as users run it before this version's
changes (CHANGELOG.md, "Unreleased"): ``helm package`` of the chart at main a25d088, kept as
the archive a user has (a clone of any depth has it; git history may be shallow). When a
version is released, replace it with that version's package.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from e2ekit import Product, apply_queue, audit, enqueue_naps, queue_body, wait_settled

import devenv
import podrunner
from integration.chart.clusterkit import get_json
from unit.chart import chartkit

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]

#: The chart before issue 22's changes (main at a25d088): the version users run today.
PREVIOUS = Path(__file__).parent / "charts" / "jobqueue-operator-before-issue-22.tgz"


def test_upgrade_from_the_previous_chart_loses_no_job_and_restarts_no_worker(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    redis_conn: redis.Redis,
    pod_runner: podrunner.PodRunner,
    crds: None,
) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # the CRDs stay this version's: the session's cluster is shared with every other test, so
    # the previous release leaves them alone (crds.install=false, kept by --reuse-values);
    # what is upgraded is the operator's release: its Deployment, RBAC, Secret, Lease
    product = Product.install(
        cluster,
        namespace,
        pod_runner,
        redis_url=redis_url,
        release=f"up-{namespace[-5:]}",
        chart=PREVIOUS,
        values={"crds": {"install": False}},
    )
    try:
        queue = apply_queue(
            cluster,
            redis_conn,
            queue_body("steady", namespace, concurrency=4, per_pod=2, minReplicas=2, maxReplicas=2),
        )
        selector = "jobqueue.glec.io/jobqueue=steady"
        devenv.wait_until(
            "two worker pods running",
            lambda: (
                len(
                    [
                        p
                        for p in pod_runner.snapshot()
                        if p.namespace == namespace
                        and p.name.startswith("steady-worker")
                        and p.state == "running"
                    ]
                )
                == 2
            ),
            timeout=90,
        )
        workers_before = {
            p["metadata"]["uid"] for p in get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
        }
        template_before = get_json(cluster, "deployment", "steady-worker", "-n", namespace)["spec"][
            "template"
        ]
        ids = enqueue_naps(redis_conn, queue, "up", 300, 0.2)  # ~15 s of work for 4 slots

        product.helm.run(
            "upgrade",
            product.release,
            str(chartkit.CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "150s",
        )
        product.wait_live()
        wait_settled(redis_conn, queue, len(ids), timeout=180)

        result = audit(redis_conn, ids)
        assert result.exactly_once(), str(result)
        after = get_json(cluster, "deployment", "steady-worker", "-n", namespace)
        assert after["spec"]["template"] == template_before  # nothing for the kubelet to roll
        workers_after = {
            p["metadata"]["uid"] for p in get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
        }
        assert workers_after == workers_before  # the same two pods, never restarted
        history = [
            line.split()[0]
            for line in product.helm.run("history", product.release, "-n", namespace).stdout.splitlines()[1:]
        ]
        assert history == ["1", "2"]
    except BaseException:
        print(product.logs())
        raise
    finally:
        product.uninstall()
