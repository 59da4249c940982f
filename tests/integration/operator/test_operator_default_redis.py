"""The operator's default Redis URL reaches the pods through a Secret, never the pod spec.

Queues without ``spec.redis`` share the namespace's Secret ``jobqueue-default-redis``
(docs/operator.md, "The default Redis"): it exists while such queues exist, is owned by
them, changes (and rolls the workers) when the operator's URL changes, and a Secret of that
name that the operator did not make is never overwritten. The URLs here carry a real
password: the session's Redis gets an ACL user for the test.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from opkit import StartOperator, apply, condition, get, jobqueue, wait_condition, wait_for

import devenv
import images
import jobqueue as jq
import podrunner
from jobqueue_operator import defaultredis

SECRET = "jobqueue-default-redis"
OWN_REDIS = {"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}}


@pytest.fixture
def password_url(redis_url: str, redis_conn: redis.Redis) -> Iterator[str]:
    """The test's Redis database as an ACL user with a password."""
    user, password = f"jq-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    redis_conn.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    yield redis_url.replace("redis://", f"redis://{user}:{password}@")
    redis_conn.acl_deluser(user)


def secret(cluster: devenv.Cluster, namespace: str) -> dict[str, Any] | None:
    return get(cluster, "secret", SECRET, namespace)


def secret_url(body: dict[str, Any] | None) -> str | None:
    return None if body is None else base64.b64decode(body["data"]["url"]).decode()


def owners(body: dict[str, Any] | None) -> set[str]:
    return {ref["name"] for ref in ((body or {}).get("metadata") or {}).get("ownerReferences") or []}


def redis_env(cluster: devenv.Cluster, namespace: str, deployment: str) -> dict[str, Any]:
    dep = get(cluster, "deployment", deployment, namespace)
    assert dep is not None
    (env,) = [
        e
        for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "JOBQUEUE_REDIS_URL"
    ]
    return dict(env)


def template_revision(cluster: devenv.Cluster, namespace: str, deployment: str) -> str | None:
    dep = get(cluster, "deployment", deployment, namespace) or {}
    annotations = dep.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    return annotations.get("jobqueue.glec.io/redis-revision")


def test_a_password_url_reaches_the_workers_through_the_secret_and_nowhere_else(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    password_url: str,
    start_operator: StartOperator,
    pod_runner: podrunner.PodRunner,
    redis_conn: redis.Redis,
) -> None:
    password = str(redis.connection.parse_url(password_url)["password"])
    start_operator(namespaces=[namespace], redis_url=password_url)
    apply(
        cluster,
        jobqueue(
            "mailer",
            namespace,
            scaling={"minReplicas": 1},
            worker={"image": images.GLEC_JOBS.ref, "imports": ["glec_jobs"]},
        ),
    )
    apply(
        cluster,
        {
            "apiVersion": "jobqueue.glec.io/v1alpha1",
            "kind": "RecurringJob",
            "metadata": {"name": "nightly", "namespace": namespace},
            "spec": {"queue": "mailer", "schedule": "0 2 * * *", "function": "glec_jobs.cleanup_old_data"},
        },
    )
    jq_body = wait_condition(
        cluster, "mailer", namespace, "Ready", status="True", reason="WorkersReady", timeout=90
    )
    assert condition(jq_body, "RedisReachable")["status"] == "True"  # the operator itself authenticated

    # the Secret: the URL, ours, owned by the JobQueue without being its controller
    body = secret(cluster, namespace)
    assert secret_url(body) == password_url
    assert body is not None
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jobqueue-operator"
    (ref,) = body["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("JobQueue", "mailer", jq_body["metadata"]["uid"])
    assert "controller" not in ref
    # the workers and the CronJob reference it
    reference = {"secretKeyRef": {"name": SECRET, "key": "url"}}
    assert redis_env(cluster, namespace, "mailer-worker")["valueFrom"] == reference
    cron = wait_for("the CronJob", lambda: get(cluster, "cronjob", "nightly", namespace))
    (cron_env,) = [
        e
        for e in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "JOBQUEUE_REDIS_URL"
    ]
    assert cron_env["valueFrom"] == reference
    assert template_revision(cluster, namespace, "mailer-worker") == "1"

    # a real worker pod (pod runner) got the URL from the Secret and logged into Redis with it
    wait_for(
        "a worker on the queue",
        lambda: jq.queue_stats(f"{namespace}.mailer", connection=redis_conn).workers,
        timeout=90,
    )

    # what a user who may read workloads but not Secrets sees: never the password (nor the URL)
    for kind in ("deployments", "replicasets", "pods", "cronjobs", "jobqueues", "recurringjobs", "events"):
        shown = cluster.kubectl("get", kind, "-n", namespace, "-o", "yaml").stdout
        assert password not in shown, kind
        assert password_url not in shown, kind


def test_the_secret_follows_the_jobqueues_that_use_the_default_redis(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    start_operator: StartOperator,
) -> None:
    operator = start_operator(namespaces=[namespace], redis_url=redis_url)
    for name in ("alpha", "beta"):
        apply(cluster, jobqueue(name, namespace))
    wait_for("both JobQueues own the Secret", lambda: owners(secret(cluster, namespace)) == {"alpha", "beta"})

    # beta moves to its own Redis: it leaves the owners, its workers leave the Secret
    cluster.kubectl(
        "create", "secret", "generic", "jobqueue-redis", "-n", namespace, f"--from-literal=url={redis_url}"
    )
    apply(cluster, jobqueue("beta", namespace, redis=OWN_REDIS))
    wait_for("beta off the Secret", lambda: owners(secret(cluster, namespace)) == {"alpha"})
    wait_for(
        "beta's workers on its own Secret",
        lambda: (
            redis_env(cluster, namespace, "beta-worker").get("valueFrom")
            == {"secretKeyRef": {"name": "jobqueue-redis", "key": "url"}}
        ),
    )
    assert template_revision(cluster, namespace, "beta-worker") is None

    # the last JobQueue on the default Redis is deleted while no operator runs: the garbage
    # collector takes the Secret
    operator.stop()
    cluster.kubectl("delete", "jobqueue", "alpha", "-n", namespace)
    # (the collector may first need to discover the JobQueue kind: up to 30 s early in a session)
    wait_for("the Secret garbage-collected", lambda: secret(cluster, namespace) is None, timeout=90)
    start_operator(namespaces=[namespace], redis_url=redis_url)

    # beta comes back to the default Redis: the Secret is made again, for it
    apply(cluster, jobqueue("beta", namespace))
    wait_for("the Secret again", lambda: owners(secret(cluster, namespace)) == {"beta"})
    wait_for(
        "beta's workers on it",
        lambda: (
            redis_env(cluster, namespace, "beta-worker").get("valueFrom")
            == {"secretKeyRef": {"name": SECRET, "key": "url"}}
        ),
    )

    # the last one moves away again: the operator deletes the Secret itself (no owner left to
    # let the garbage collector do it)
    apply(cluster, jobqueue("beta", namespace, redis=OWN_REDIS))
    wait_for("the Secret deleted", lambda: secret(cluster, namespace) is None)

    # deleted by hand while a JobQueue needs it: back within a settings sweep
    apply(cluster, jobqueue("gamma", namespace))
    first = wait_for("the Secret for gamma", lambda: secret(cluster, namespace))
    cluster.kubectl("delete", "secret", SECRET, "-n", namespace)
    again = wait_for("the Secret recreated", lambda: secret(cluster, namespace), timeout=30)
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    assert owners(again) == {"gamma"}
    # same URL, same revision: recreating it does not roll the workers
    assert again["metadata"]["annotations"] == first["metadata"]["annotations"]


def test_many_jobqueues_share_a_small_secret_that_outlives_its_deleted_owners(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    start_operator: StartOperator,
) -> None:
    # every JobQueue as an owner made the Secret grow by ~150 bytes per queue: 1.5 MB, the API
    # server's limit, at ten thousand (and a rewrite of the whole list per new JobQueue)
    start_operator(namespaces=[namespace], redis_url=redis_url)
    names = [f"q{i:02d}" for i in range(defaultredis.OWNER_LIMIT + 4)]
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [jobqueue(n, namespace) for n in names]}
        ),
    )
    for n in names:
        wait_for(f"{n}'s Deployment", lambda n=n: get(cluster, "deployment", f"{n}-worker", namespace))

    def full() -> set[str] | None:
        now = owners(secret(cluster, namespace))
        return now if len(now) == defaultredis.OWNER_LIMIT else None

    first = wait_for("a full owner list", full)
    # every owner is deleted: others take their places, and the Secret stays for them
    cluster.kubectl("delete", "jobqueue", "-n", namespace, *sorted(first))
    rest = set(names) - first
    wait_for("the remaining JobQueues own it", lambda: owners(secret(cluster, namespace)) == rest, timeout=90)
    for n in rest:
        assert redis_env(cluster, namespace, f"{n}-worker")["valueFrom"] == {
            "secretKeyRef": {"name": SECRET, "key": "url"}
        }


def test_a_new_default_url_updates_the_secret_and_rolls_the_workers(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    password_url: str,
    start_operator: StartOperator,
) -> None:
    first = start_operator(namespaces=[namespace], redis_url=redis_url)
    apply(cluster, jobqueue("rotating", namespace, scaling={"minReplicas": 1}))
    wait_condition(cluster, "rotating", namespace, "Ready", status="True", reason="WorkersReady", timeout=90)
    before = get(cluster, "deployment", "rotating-worker", namespace)
    assert before is not None
    assert template_revision(cluster, namespace, "rotating-worker") == "1"
    first.stop()

    # the operator restarts with a rotated URL (here: a password where there was none)
    start_operator(namespaces=[namespace], redis_url=password_url)
    wait_for("the rotated URL in the Secret", lambda: secret_url(secret(cluster, namespace)) == password_url)
    wait_for("the workers rolled", lambda: template_revision(cluster, namespace, "rotating-worker") == "2")
    after = get(cluster, "deployment", "rotating-worker", namespace)
    assert after is not None
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    annotations = (secret(cluster, namespace) or {})["metadata"]["annotations"]
    assert annotations["jobqueue.glec.io/redis-revision"] == "2"
    wait_condition(cluster, "rotating", namespace, "Ready", status="True", reason="WorkersReady", timeout=90)


def test_a_secret_of_that_name_made_by_someone_else_is_left_alone(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    start_operator: StartOperator,
) -> None:
    theirs = "redis://someone-elses-redis:6379/0"
    cluster.kubectl("create", "secret", "generic", SECRET, "-n", namespace, f"--from-literal=url={theirs}")
    start_operator(namespaces=[namespace], redis_url=redis_url)
    apply(cluster, jobqueue("careful", namespace))
    jq_body = wait_condition(
        cluster, "careful", namespace, "Ready", status="False", reason="RedisSecretConflict"
    )
    assert (
        f"Secret {namespace}/{SECRET} exists but was not made by jobqueue-operator"
        in condition(jq_body, "Ready")["message"]
    )
    body = secret(cluster, namespace)
    assert secret_url(body) == theirs
    assert body is not None
    assert "ownerReferences" not in body["metadata"]
    assert get(cluster, "deployment", "careful-worker", namespace) is None  # never pointed at it
    assert any(
        e["reason"] == "RedisSecretConflict" and e["type"] == "Warning"
        for e in json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    )

    # once that Secret is gone, the operator makes its own (a retry, no change to the JobQueue)
    cluster.kubectl("delete", "secret", SECRET, "-n", namespace)
    wait_condition(cluster, "careful", namespace, "Ready", status="True", timeout=60)
    assert secret_url(secret(cluster, namespace)) == redis_url
    assert redis_env(cluster, namespace, "careful-worker")["valueFrom"] == {
        "secretKeyRef": {"name": SECRET, "key": "url"}
    }
