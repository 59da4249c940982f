"""No secret in any output, end to end (issue 20).

The chart installed the way users install it, with a password-protected Redis and namespace
isolation (its default); the demo's flow in small — a JobQueue scaling a burst up and down,
a RecurringJob run by hand — plus what goes wrong in real life: a JobQueue whose own Redis
URL (with a password) is dead, a CronJob pod that cannot reach that Redis, and an outage of
the default Redis. Then every JobQueue and RecurringJob status, every Event, every pod spec
and pod log, the operator's and the workers' metrics are searched for each password (and
for an unsalted sha256 of the URLs, which the chart used to put on the operator pod).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from e2ekit import NAP, Product, apply_queue, enqueue_naps, http_get, queue_body, wait_settled
from opkit import wait_condition, wait_for

import devenv
import podrunner
from integration.recurring import rjkit

ADMIN_PASSWORD = f"adm1n-{uuid.uuid4().hex}"
OWN_PASSWORD = f"own-{uuid.uuid4().hex}"


@pytest.fixture
def protected_redis() -> Iterator[devenv.RedisServer]:
    server = devenv.RedisServer().start()
    redis.Redis(port=server.port).config_set("requirepass", ADMIN_PASSWORD)
    yield server
    server.stop()


def test_no_password_reaches_a_status_event_pod_log_or_metric(
    cluster: devenv.Cluster,
    namespace: str,
    pod_runner: podrunner.PodRunner,
    protected_redis: devenv.RedisServer,
    crds: None,
) -> None:
    admin_url = f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{protected_redis.port}/0"
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    product = Product.install(
        cluster,
        namespace,
        pod_runner,
        redis_url=admin_url,
        release=f"jq-{namespace[-5:]}",
        values={"redis": {"url": admin_url, "isolation": "namespace"}},
    )
    try:
        run_the_flow(
            cluster, namespace, pod_runner, server=protected_redis, admin_url=admin_url, product=product
        )
    except BaseException:
        print(product.logs())
        raise
    finally:
        product.uninstall()


def run_the_flow(
    cluster: devenv.Cluster,
    namespace: str,
    pod_runner: podrunner.PodRunner,
    *,
    server: devenv.RedisServer,
    admin_url: str,
    product: Product,
) -> None:
    body = queue_body(
        "burst", namespace, concurrency=4, per_pod=2, scaleDownDelaySeconds=2, idleSecondsBeforeZero=3
    )
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    # the namespace's own credentials, as an application of the namespace would mount them
    secret = wait_for(
        "the namespace's Secret",
        lambda: json.loads(
            cluster.kubectl(
                "get", "secret", "jobqueue-default-redis", "-n", namespace, "-o", "json", check=False
            ).stdout
            or "{}"
        ).get("data"),
        timeout=60,
    )
    tenant_url = base64.b64decode(secret["url"]).decode()
    tenant_password = str(redis.connection.parse_url(tenant_url)["password"])
    conn = redis.Redis.from_url(tenant_url)
    queue = apply_queue(cluster, conn, body)

    # a burst: scaled up, drained, scaled down; worker metrics scraped while they run
    ids = enqueue_naps(conn, queue, "b", 12, 0.5)
    worker_metrics = wait_for("a worker's metrics", lambda: scrape_workers(pod_runner, namespace), timeout=60)
    wait_settled(conn, queue, len(ids), timeout=120)

    # a RecurringJob run by hand: its CronJob pod runs `jobqueue enqueue` with the Secret's URL
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            rjkit.recurringjob(
                "nightly", namespace, queue="burst", schedule="0 3 * * *", function=NAP, args=["manual", 0.1]
            )
        ),
    )
    rjkit.wait_ready(cluster, "nightly", namespace, status="True", reason="Scheduled")
    cluster.kubectl("create", "job", "--from=cronjob/nightly", "nightly-by-hand", "-n", namespace)
    wait_for(
        "the manual run's job", lambda: conn.exists("rq:job:" + f"rj_{namespace}_nightly-by-hand"), timeout=90
    )

    # a JobQueue on a Redis of its own whose URL has a password and which is dead, with a
    # RecurringJob whose CronJob pod then fails to reach it
    dead = f"redis://jobs:{OWN_PASSWORD}@127.0.0.1:{devenv.free_port()}/0"
    cluster.kubectl(
        "create", "secret", "generic", "jobqueue-redis", "-n", namespace, f"--from-literal=url={dead}"
    )
    own = queue_body("own-redis", namespace, concurrency=1, per_pod=1)
    own["spec"]["redis"] = {"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(own))
    wait_condition(
        cluster, "own-redis", namespace, "RedisReachable", status="False", reason="RedisUnavailable"
    )
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            rjkit.recurringjob(
                "own-nightly",
                namespace,
                queue="own-redis",
                schedule="0 3 * * *",
                function=NAP,
                args=["x", 0.1],
            )
        ),
    )
    # (its Ready stays False, so wait for the CronJob itself: the apply only just returned)
    wait_for(
        "CronJob own-nightly",
        lambda: (
            cluster.kubectl("get", "cronjob", "own-nightly", "-n", namespace, check=False).returncode == 0
        ),
        timeout=60,
    )
    cluster.kubectl("create", "job", "--from=cronjob/own-nightly", "own-by-hand", "-n", namespace)
    wait_for(
        "the failing CronJob pod's log",
        lambda: "cannot reach Redis" in pod_logs(pod_runner, namespace),
        timeout=90,
    )

    # the default Redis goes away for a while: statuses, Events and worker logs say so
    server.pause()
    try:
        wait_condition(
            cluster,
            "burst",
            namespace,
            "RedisReachable",
            status="False",
            reason="RedisUnavailable",
            timeout=60,
        )
        time.sleep(3)
    finally:
        server.resume()
    wait_condition(cluster, "burst", namespace, "RedisReachable", status="True", timeout=60)

    # what every reader can see
    info = product.operator_process()
    assert info is not None
    _, operator_metrics = http_get(info.ports["JOBQUEUE_METRICS_PORT"], "/metrics")
    outputs = {
        "statuses and specs": cluster.kubectl(
            "get",
            "jobqueues,recurringjobs,deployments,replicasets,pods,cronjobs,jobs",
            "-n",
            namespace,
            "-o",
            "yaml",
        ).stdout,
        "events": cluster.kubectl("get", "events", "-n", namespace, "-o", "yaml").stdout,
        "pod logs": pod_logs(pod_runner, namespace),
        "operator metrics": operator_metrics,
        "worker metrics": worker_metrics,
        "kubectl describe": cluster.kubectl("describe", "jobqueues,recurringjobs", "-n", namespace).stdout,
    }
    assert "RedisUnavailable" in outputs["events"]  # the failures did happen, and were told
    assert "cannot reach Redis" in outputs["pod logs"]
    assert "redis_up" in outputs["operator metrics"] or "jobqueue" in outputs["operator metrics"]
    secrets = {
        "the admin password": ADMIN_PASSWORD,
        "the namespace's password": tenant_password,
        "a spec.redis password": OWN_PASSWORD,
    }
    digests = {
        f"sha256 of {u}": hashlib.sha256(u.encode()).hexdigest() for u in (admin_url, tenant_url, dead)
    }
    for where, text in outputs.items():
        for what, secret_text in {**secrets, **digests}.items():
            assert secret_text not in text, f"{what} in {where}"
    assert tenant_url not in outputs["statuses and specs"]


def pod_logs(runner: podrunner.PodRunner, namespace: str) -> str:
    """Every pod log of the namespace the pod runner wrote (pods already gone included)."""
    folder = runner.config.state_dir / namespace
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("*.log")))


def scrape_workers(runner: podrunner.PodRunner, namespace: str) -> str | None:
    texts = []
    for info in runner.snapshot():
        if (
            info.namespace == namespace
            and info.state == "running"
            and "-worker-" in info.name
            and "JOBQUEUE_METRICS_PORT" in info.ports
        ):
            try:
                texts.append(http_get(info.ports["JOBQUEUE_METRICS_PORT"], "/metrics")[1])
            except OSError:
                continue
    return "\n".join(texts) or None
