"""Each queue's Redis: Secrets, unreachable servers, shared queue names, renames.

A queue whose Redis cannot be used says so in its conditions, while the operator keeps
serving every other queue; when the cause goes away the queue recovers by itself (the
settings sweep), without anyone touching the JobQueue.
"""

from __future__ import annotations

import redis
from opkit import RunningOperator, apply, condition, events, get, jobqueue, wait_condition, wait_for

import devenv
from jobqueue import settings as qsettings


def secret_ref(name: str, key: str = "url") -> dict[str, object]:
    return {"urlSecretRef": {"name": name, "key": key}}


def test_missing_secret_and_dead_redis_are_conditions_and_other_queues_keep_working(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    redis_conn: redis.Redis,
    operator: RunningOperator,
) -> None:
    dead = f"redis://127.0.0.1:{devenv.free_port()}/0"
    cluster.kubectl(
        "create", "secret", "generic", "dead-redis", "-n", namespace, f"--from-literal=url={dead}"
    )
    cluster.kubectl(
        "create", "secret", "generic", "wrong-key", "-n", namespace, f"--from-literal=uri={redis_url}"
    )
    apply(cluster, jobqueue("healthy", namespace, scaling={"minReplicas": 1}))
    apply(cluster, jobqueue("no-secret", namespace, redis=secret_ref("jobqueue-redis")))
    apply(cluster, jobqueue("no-key", namespace, redis=secret_ref("wrong-key")))
    apply(cluster, jobqueue("dead", namespace, redis=secret_ref("dead-redis")))

    missing = wait_condition(
        cluster, "no-secret", namespace, "RedisReachable", status="False", reason="SecretNotFound"
    )
    assert condition(missing, "RedisReachable")["message"] == (
        f"spec.redis.urlSecretRef: Secret {namespace}/jobqueue-redis not found"
    )
    assert condition(missing, "Ready")["reason"] == "RedisUnreachable"
    no_key = wait_condition(
        cluster, "no-key", namespace, "RedisReachable", status="False", reason="SecretKeyNotFound"
    )
    assert "has no key 'url'" in condition(no_key, "RedisReachable")["message"]
    down = wait_condition(
        cluster, "dead", namespace, "RedisReachable", status="False", reason="RedisUnavailable"
    )
    message = condition(down, "RedisReachable")["message"]
    assert dead.rsplit("/", 1)[0] in message
    # what failed is for the operator's log: the status would make the operator a port scanner
    # for whoever writes a JobQueue (refused, timed out, not a Redis: all read the same)
    assert "did not answer" in message
    for telltale in ("ConnectionError", "Connection refused", "Errno", "111"):
        assert telltale not in message
    # the other queue is untouched, and every queue still got its Deployment
    wait_condition(cluster, "healthy", namespace, "Ready", status="True", reason="WorkersReady", timeout=90)
    for name in ("healthy", "no-secret", "no-key", "dead"):
        assert get(cluster, "deployment", f"{name}-worker", namespace) is not None, name
    wait_for(
        "the warning event",
        lambda: any(
            (t, r) == ("Warning", "SecretNotFound") for t, r, _ in events(cluster, namespace, "no-secret")
        ),
    )

    # the Secret appears: the queue recovers on its own, publishing into the Redis it names
    cluster.kubectl(
        "create", "secret", "generic", "jobqueue-redis", "-n", namespace, f"--from-literal=url={redis_url}"
    )
    wait_condition(cluster, "no-secret", namespace, "RedisReachable", status="True")
    assert f"{namespace}.no-secret" in qsettings.published_queue_names(redis_conn)
    wait_for(
        "the recovery event",
        lambda: any(
            (t, r) == ("Normal", "RedisReachable") for t, r, _ in events(cluster, namespace, "no-secret")
        ),
    )


def test_a_queue_recovers_when_its_redis_comes_back(
    cluster: devenv.Cluster,
    namespace: str,
    redis_server: devenv.RedisServer,
    redis_conn: redis.Redis,
    operator: RunningOperator,
) -> None:
    apply(cluster, jobqueue("steady", namespace))
    wait_condition(cluster, "steady", namespace, "RedisReachable", status="True")
    redis_server.pause()
    try:
        wait_condition(
            cluster, "steady", namespace, "RedisReachable", status="False", reason="RedisUnavailable"
        )
        # a change made while Redis is down is applied to the Deployment at once...
        apply(cluster, jobqueue("steady", namespace, priority=1))
        wait_for(
            "generation 2 observed",
            lambda: (
                (get(cluster, "jobqueue", "steady", namespace) or {})
                .get("status", {})
                .get("observedGeneration")
                == 2
            ),
        )
    finally:
        redis_server.resume()
    # ...and published as soon as Redis answers again
    wait_condition(cluster, "steady", namespace, "RedisReachable", status="True")
    wait_for(
        "the new settings published", lambda: qsettings.load(redis_conn, f"{namespace}.steady").priority == 1
    )


def test_two_jobqueues_cannot_share_a_queue_name(
    cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("first", namespace, queueName="shared", priority=1))
    wait_condition(cluster, "first", namespace, "RedisReachable", status="True")
    apply(cluster, jobqueue("second", namespace, queueName="shared", priority=5))
    second = wait_condition(cluster, "second", namespace, "Ready", status="False", reason="QueueNameConflict")
    assert "already declared by JobQueue first of this namespace" in condition(second, "Ready")["message"]
    assert qsettings.load(redis_conn, "shared").jobqueue == "first"  # not overwritten
    assert get(cluster, "deployment", "second-worker", namespace) is None  # no workers on first's queue

    cluster.kubectl("delete", "jobqueue", "first", "-n", namespace)
    wait_condition(cluster, "second", namespace, "Ready", status="True")
    loaded = qsettings.load(redis_conn, "shared")
    assert (loaded.jobqueue, loaded.priority) == ("second", 5)


def test_renaming_the_queue_withdraws_the_old_name(
    cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis, operator: RunningOperator
) -> None:
    apply(cluster, jobqueue("mailer", namespace, queueName="mail:v1"))
    wait_condition(cluster, "mailer", namespace, "RedisReachable", status="True")
    apply(cluster, jobqueue("mailer", namespace, queueName="mail:v2"))
    wait_for(
        "only the new name published", lambda: qsettings.published_queue_names(redis_conn) == {"mail:v2"}
    )
    wait_for(
        "the new name in the status",
        lambda: (get(cluster, "jobqueue", "mailer", namespace) or {})["status"]["queueName"] == "mail:v2",
    )
    dep = get(cluster, "deployment", "mailer-worker", namespace)
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["command"][3] == "mail:v2"


def test_queues_without_any_redis_configured_say_so(
    cluster: devenv.Cluster, namespace: str, start_operator: object
) -> None:
    start_operator(namespaces=[namespace], redis_url=None)  # type: ignore[operator]
    apply(cluster, jobqueue("nowhere", namespace))
    jq = wait_condition(
        cluster, "nowhere", namespace, "RedisReachable", status="False", reason="NoRedisConfigured"
    )
    assert "JOBQUEUE_REDIS_URL" in condition(jq, "RedisReachable")["message"]
