"""Tenants sharing one Redis (issue 20): a queue belongs to one JobQueue, and with namespace
isolation each namespace holds credentials for its own database only.

Two namespaces, a real Redis with ACLs (its ``default`` user has a password: otherwise
nothing could be isolated), the real operator, and the session pod runner's real workers
logging in with what the operator put in each namespace's Secret.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from opkit import StartOperator, apply, condition, events, get, jobqueue, wait_condition, wait_for

import devenv
import images
import jobqueue as jq
import podrunner
from jobqueue_operator.builders import redisacl

SECRET = "jobqueue-default-redis"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"
#: the demo's job image (built for the session's pod runner): its pods really run
WORKER = {"image": images.GLEC_JOBS.ref, "imports": ["glec_jobs"], "mode": "thread"}


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[str]:
    """A Redis of its own whose default user needs a password; yields the admin URL."""
    server = devenv.RedisServer().start()
    redis.Redis(port=server.port).config_set("requirepass", ADMIN_PASSWORD)
    yield f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{server.port}/0"
    server.stop()


@pytest.fixture
def other_namespace(cluster: devenv.Cluster) -> Iterator[str]:
    name = f"t-tenant-b-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def secret_url(cluster: devenv.Cluster, namespace: str) -> str | None:
    body = get(cluster, "secret", SECRET, namespace)
    return None if body is None else base64.b64decode(body["data"]["url"]).decode()


def refused(call: Any) -> str:
    """The error text of a Redis call that must be refused."""
    try:
        call()
    except redis.RedisError as e:
        return str(e)
    raise AssertionError("the call was allowed")


def test_each_namespace_gets_its_own_database_and_credentials_and_nothing_else(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    other_namespace: str,
    acl_redis: str,
    start_operator: StartOperator,
    pod_runner: podrunner.PodRunner,
) -> None:
    a, b = namespace, other_namespace
    start_operator(namespaces=[a, b], redis_url=acl_redis, redis_isolation="namespace")
    for ns in (a, b):  # the same queue name in both: no conflict, they never meet
        apply(cluster, jobqueue("orders", ns, queueName="orders", scaling={"minReplicas": 1}, worker=WORKER))
    for ns in (a, b):
        wait_condition(cluster, "orders", ns, "Ready", status="True", reason="WorkersReady", timeout=120)

    url_a, url_b = secret_url(cluster, a), secret_url(cluster, b)
    assert url_a is not None
    assert url_b is not None
    assert ADMIN_PASSWORD not in url_a + url_b  # the operator's own credentials stay with it
    db_a, db_b = redisacl.database_of(url_a), redisacl.database_of(url_b)
    assert 0 not in (db_a, db_b)
    assert db_a != db_b
    assert redis.connection.parse_url(url_a)["username"] == f"jobqueue-ns-{a}"

    # real workers of each namespace, logged in with the Secret's credentials, run jobs
    conn_a, conn_b = redis.Redis.from_url(url_a), redis.Redis.from_url(url_b)
    for conn, order in ((conn_a, "a-1"), (conn_b, "b-1")):
        jq.enqueue(
            "orders",
            "glec_jobs.update_order_status",
            order,
            "created",
            "assigned",
            job_id=order,
            connection=conn,
        )
    for conn, order in ((conn_a, "a-1"), (conn_b, "b-1")):
        wait_for(
            f"job {order} done",
            lambda c=conn, o=order: jq.get_job("orders", o, connection=c).status == "finished",
            timeout=60,
        )
    with pytest.raises(jq.UnknownJobError):  # B's job is not in A's queue, though the names match
        jq.get_job("orders", "b-1", connection=conn_a)
    # a job that fails for good (recorded in the failures stream too) and a paused queue: the
    # namespace's own keys beside RQ's, within its credentials
    jq.enqueue(
        "orders",
        "glec_jobs.update_order_status",
        "a-2",
        "delivered",
        "created",
        job_id="a-2",
        connection=conn_a,
    )
    wait_for(
        "job a-2 failed",
        lambda: jq.get_job("orders", "a-2", connection=conn_a).status == "failed",
        timeout=60,
    )
    assert conn_a.xlen("jobqueue:exhausted") >= 1
    conn_a.hset("jobqueue:paused", "orders", "{}")
    conn_a.hdel("jobqueue:paused", "orders")

    # what A's credentials cannot do: reach B's database, or anything server-wide
    assert "select" in refused(lambda: conn_a.execute_command("SELECT", db_b))
    in_b = redis.Redis.from_url(url_a.rsplit("/", 1)[0] + f"/{db_b}")
    assert "select" in refused(in_b.ping)
    lobby = redis.Redis.from_url(url_a.rsplit("/", 1)[0] + "/0")
    for call in (
        lambda: conn_a.eval("redis.call('SELECT', ARGV[1]) return redis.call('KEYS', '*')", 0, db_b),
        lambda: conn_a.move("rq:queue:orders", db_b),
        lambda: conn_a.execute_command("COPY", "rq:queue:orders", "x", "DB", db_b),
        lambda: conn_a.execute_command("SWAPDB", db_a, db_b),
        conn_a.flushall,
        lambda: conn_a.keys("*"),
        conn_a.client_list,
        lambda: conn_a.config_get("*"),
        conn_a.acl_list,
        lambda: conn_a.publish("rq:pubsub:anything", "shutdown"),
        lambda: conn_a.execute_command("CLIENT", "TRACKING", "on", "BCAST"),
        lambda: conn_a.execute_command("FUNCTION", "FLUSH"),
        lambda: conn_a.set("jobqueue:settings:orders", "{}"),  # the operator's settings: read only
        lambda: lobby.hgetall(redisacl.DATABASES_KEY),  # the operator's bookkeeping
        lambda: conn_a.set("unrelated-key", 1),
    ):
        assert "NOPERM" in refused(call) or "permission" in refused(call) or "can't" in refused(call)
    assert conn_a.get("jobqueue:settings:orders") is not None  # but it may read them
    assert conn_b.llen("rq:queue:orders") == 0
    # the operator's status shows no credentials
    for ns in (a, b):
        shown = cluster.kubectl("get", "jobqueues,deployments,pods,events", "-n", ns, "-o", "yaml").stdout
        assert ADMIN_PASSWORD not in shown
        assert str(redis.connection.parse_url(url_a)["password"]) not in shown


def test_credentials_come_back_after_a_redis_restart_and_rotate_with_the_secret(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    acl_redis: str,
    start_operator: StartOperator,
) -> None:
    start_operator(namespaces=[namespace], redis_url=acl_redis, redis_isolation="namespace")
    apply(cluster, jobqueue("orders", namespace, worker=WORKER))
    first = wait_for("the Secret", lambda: secret_url(cluster, namespace))
    admin = redis.Redis.from_url(acl_redis)
    assert redis.Redis.from_url(first).ping()

    # a Redis restarted without an ACL file forgets its users: the sweep sets them again
    admin.acl_deluser(f"jobqueue-ns-{namespace}")
    wait_for("the user set again", lambda: bool(admin.acl_getuser(f"jobqueue-ns-{namespace}")), timeout=30)
    assert redis.Redis.from_url(first).ping()

    # deleting the Secret rotates the password: a new revision, the old password refused
    revision = (get(cluster, "secret", SECRET, namespace) or {})["metadata"]["annotations"]
    cluster.kubectl("delete", "secret", SECRET, "-n", namespace)
    second = wait_for(
        "a new Secret", lambda: (u := secret_url(cluster, namespace)) != first and u, timeout=30
    )
    assert redisacl.database_of(second) == redisacl.database_of(first)  # its data stays where it was
    assert get(cluster, "secret", SECRET, namespace)["metadata"]["annotations"] != revision  # type: ignore[index]
    assert redis.Redis.from_url(second).ping()
    assert "invalid" in refused(redis.Redis.from_url(first).ping).lower()

    # the last JobQueue on the default Redis goes: so do the Secret and the user
    cluster.kubectl("delete", "jobqueue", "orders", "-n", namespace)
    wait_for("the user deleted", lambda: not admin.acl_getuser(f"jobqueue-ns-{namespace}"), timeout=90)


def test_a_redis_that_cannot_isolate_is_reported_not_used(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    start_operator: StartOperator,
) -> None:
    # the session's Redis lets anyone in without a password: per-namespace users would be a sham
    start_operator(namespaces=[namespace], redis_url=redis_url, redis_isolation="namespace")
    apply(cluster, jobqueue("orders", namespace, worker=WORKER))
    body = wait_condition(cluster, "orders", namespace, "Ready", status="False", reason="RedisSecretFailed")
    assert "without a password" in condition(body, "Ready")["message"]
    assert get(cluster, "deployment", "orders-worker", namespace) is None
    assert get(cluster, "secret", SECRET, namespace) is None


def test_a_queue_name_another_jobqueue_owns_gets_no_workers_and_names_no_other_tenant(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    other_namespace: str,
    redis_url: str,
    start_operator: StartOperator,
) -> None:
    """Regression (issue 20): the Deployment was applied although publishing had failed with
    QueueNameTaken, so B's image took A's jobs; the message named A's namespace/JobQueue."""
    a, b = namespace, other_namespace
    for ns in (a, b):  # both on one Redis of their own choosing (isolation cannot apply)
        cluster.kubectl(
            "create", "secret", "generic", "shared-redis", "-n", ns, f"--from-literal=url={redis_url}"
        )
    own = {"urlSecretRef": {"name": "shared-redis", "key": "url"}}
    start_operator(namespaces=[a, b], redis_url=None)
    apply(cluster, jobqueue("salaries", a, queueName="payroll", redis=own))
    wait_condition(cluster, "salaries", a, "RedisReachable", status="True")
    # B had workers for a queue of its own, then points them at A's queue
    apply(cluster, jobqueue("thief", b, queueName="thief", redis=own))
    wait_for("B's Deployment", lambda: get(cluster, "deployment", "thief-worker", b))
    apply(cluster, jobqueue("thief", b, queueName="payroll", redis=own))
    body = wait_condition(cluster, "thief", b, "Ready", status="False", reason="QueueNameConflict")
    wait_for("B's Deployment deleted", lambda: get(cluster, "deployment", "thief-worker", b) is None)
    message = condition(body, "Ready")["message"]
    assert "another namespace" in message
    texts = json.dumps([body["status"], events(cluster, b, "thief")])
    assert a not in texts
    assert "salaries" not in texts  # the queue name, never A's JobQueue
    # and it stays so: the sweeps (every 2 s here) do not bring B's workers back
    time.sleep(5)
    assert get(cluster, "deployment", "thief-worker", b) is None
    assert condition(get(cluster, "jobqueue", "salaries", a), "Ready")["reason"] != "QueueNameConflict"

    # A lets the name go: B gets it, and workers
    apply(cluster, jobqueue("salaries", a, queueName="payroll-v2", redis=own))
    wait_condition(cluster, "thief", b, "RedisReachable", status="True", timeout=60)
    wait_for("B's Deployment back", lambda: get(cluster, "deployment", "thief-worker", b), timeout=60)
