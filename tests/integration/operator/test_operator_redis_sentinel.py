"""The operator on Redis watched by Sentinel (``redis+sentinel://``, three real Sentinels, a
primary and a replica: :mod:`redisfarm`): its default Redis and a queue's
``spec.redis.urlSecretRef`` may name the Sentinels, and when the primary dies the operator
publishes to, and scales from, the replica the Sentinels promoted — without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opkit import StartOperator, apply, condition, get, jobqueue, wait_condition, wait_for

import devenv
import redisfarm
from jobqueue import JobSpec, _redis, enqueue_many
from jobqueue import settings as qsettings

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def sentinels() -> Iterator[redisfarm.SentinelGroup]:
    with redisfarm.SentinelGroup().start() as group:
        yield group


def replicas(cluster: devenv.Cluster, namespace: str, name: str) -> int:
    body = get(cluster, "deployment", f"{name}-worker", namespace) or {}
    return int((body.get("spec") or {}).get("replicas") or 0)


def test_the_operator_follows_a_failover(
    cluster: devenv.Cluster, namespace: str, sentinels: redisfarm.SentinelGroup, start_operator: StartOperator
) -> None:
    default, other = sentinels.url(db=1), sentinels.url(db=2)
    cluster.kubectl(
        "create", "secret", "generic", "jobqueue-redis", "-n", namespace, f"--from-literal=url={other}"
    )
    start_operator(namespaces=[namespace], redis_url=default)
    apply(cluster, jobqueue("on-default", namespace, concurrency=4, scaling={"idleSecondsBeforeZero": 600}))
    apply(
        cluster,
        jobqueue(
            "on-secret",
            namespace,
            concurrency=4,
            scaling={"idleSecondsBeforeZero": 600},
            redis={"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}},
        ),
    )
    for name in ("on-default", "on-secret"):
        wait_condition(cluster, name, namespace, "RedisReachable", status="True")
    conns = {"on-default": _redis.connect(default), "on-secret": _redis.connect(other)}
    for name, conn in conns.items():
        assert f"{namespace}.{name}" in qsettings.published_queue_names(conn)

    old, _ = sentinels.fail_primary()
    sentinels.wait_failover(old)
    # work that only the new primary has: the autoscaler must read it there to scale for it
    for name, conn in conns.items():
        wait_for(
            f"{name}'s jobs enqueued on the new primary",
            lambda n=name, c=conn: enqueue_many(
                f"{namespace}.{n}", [JobSpec("glec.jobs.noop", [])] * 3, connection=c
            ),
            timeout=60,
        )
        wait_for(f"{name} scaled for them", lambda n=name: replicas(cluster, namespace, n) >= 1, timeout=60)

    def backlog(name: str) -> dict[str, object] | None:
        body = get(cluster, "jobqueue", name, namespace) or {}
        return body if (body.get("status") or {}).get("queued") == 3 else None

    for name in conns:
        body = wait_for(
            f"{name}'s status showing the new primary's backlog", lambda n=name: backlog(n), timeout=60
        )
        assert condition(body, "RedisReachable")["status"] == "True", body["status"]
