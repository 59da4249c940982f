"""The admin HTTP API (`jobqueue api`) against real Redis, real workers and the real
kube-apiserver's TokenReview and SubjectAccessReview: every endpoint, RBAC with two
ServiceAccounts, and bad input answered with a 4xx that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apikit import OPERATOR_RULES, VIEWER_RULES, ApiServer, api_server, declare, redis_state, service_account

import devenv
from integration.workers.whelpers import FN, thread_worker, wait_for, wait_status
from jobqueue import enqueue, get_job

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis]

Q = "ops:emails"


@pytest.fixture
def server(redis_url: str, kubeconfig: str, tmp_path: Path) -> Iterator[ApiServer]:
    with api_server(redis_url, kubeconfig, tmp_path) as s:
        yield s


@pytest.fixture
def ops(cluster: devenv.Cluster, namespace: str) -> str:
    return service_account(cluster, namespace, "ops", OPERATOR_RULES)


@pytest.fixture
def viewer(cluster: devenv.Cluster, namespace: str) -> str:
    return service_account(cluster, namespace, "viewer", VIEWER_RULES)


@pytest.fixture
def failed_job(redis_conn: redis.Redis, redis_url: str, namespace: str) -> str:
    declare(redis_conn, Q, namespace, "emails", attempts=1)
    enqueue(Q, FN + "always_fail", "SMTP relay down", job_id="mail-1", connection=redis_conn)
    with thread_worker(redis_url, Q):
        wait_status(redis_conn, Q, "mail-1", "failed")
    return "mail-1"


def test_rbac_decides_one_account_allowed_the_other_refused(
    *, server: ApiServer, ops: str, viewer: str, failed_job: str, namespace: str, redis_conn: redis.Redis
) -> None:
    # both may read
    for token in (ops, viewer):
        listed = server.call("GET", "/api/v1/queues", token)
        assert listed.status == 200, listed.body
        assert [q["queue"] for q in listed.body["queues"]] == [Q]
    # the viewer may not change anything: 403 naming the permission, and nothing changes
    before = redis_state(redis_conn)
    for method, path, perm in (
        ("POST", f"/api/v1/queues/{Q}/jobs/{failed_job}/retry", "update jobqueues/jobs"),
        ("DELETE", f"/api/v1/queues/{Q}/jobs/{failed_job}", "update jobqueues/jobs"),
        ("POST", f"/api/v1/queues/{Q}/pause", "update jobqueues/pause"),
        ("POST", f"/api/v1/queues/{Q}/jobs", "create jobqueues/jobs"),
    ):
        body = {"function": FN + "noop"} if path.endswith("/jobs") else None
        refused = server.call(method, path, viewer, body)
        assert refused.status == 403, (method, path, refused.body)
        assert refused.body["detail"].startswith(
            f"system:serviceaccount:{namespace}:viewer may not {perm} (jobqueue.glec.io) on JobQueue "
            f"{namespace}/emails"
        ), refused.body
    assert redis_state(redis_conn) == before
    # the operator may
    retried = server.call("POST", f"/api/v1/queues/{Q}/jobs/{failed_job}/retry", ops)
    assert retried.status == 200, retried.body
    assert (retried.body["state"], retried.body["attempts"]) == ("queued", 0)
    paused = server.call("POST", f"/api/v1/queues/{Q}/pause", ops)
    assert paused.status == 200, paused.body
    assert paused.body["pausedBy"] == f"system:serviceaccount:{namespace}:ops"


def test_who_is_not_authenticated_gets_401(
    server: ApiServer, failed_job: str, cluster: devenv.Cluster, namespace: str
) -> None:
    missing = server.call("GET", f"/api/v1/queues/{Q}")
    assert missing.status == 401
    assert missing.headers.get("www-authenticate") == "Bearer"
    assert "no bearer token" in missing.body["detail"]
    forged = server.call("GET", f"/api/v1/queues/{Q}", "not-a-real-token")
    assert forged.status == 401
    assert "the bearer token is not valid" in forged.body["detail"]
    # a valid token without any permission: authenticated, then refused, and shown no queue
    stranger = service_account(cluster, namespace, "stranger", None)
    assert server.call("GET", "/api/v1/queues", stranger).body == {"queues": []}
    refused = server.call("GET", f"/api/v1/queues/{Q}/jobs/{failed_job}", stranger)
    assert refused.status == 403
    assert "may not get jobqueues" in refused.body["detail"]


def test_every_endpoint(
    server: ApiServer, ops: str, failed_job: str, redis_conn: redis.Redis, redis_url: str
) -> None:
    # enqueue: 201, then 200 for the same id (nothing added)
    body = {
        "function": FN + "sleep",
        "args": [1.0],
        "jobId": "slow-1",
        "priority": 1,
        "options": {"attempts": 2, "timeoutSeconds": 30},
    }
    added = server.call("POST", f"/api/v1/queues/{Q}/jobs", ops, body)
    assert (added.status, added.body) == (
        201,
        {"id": "slow-1", "queue": Q, "duplicate": False, "state": "queued"},
    )
    again = server.call("POST", f"/api/v1/queues/{Q}/jobs", ops, body)
    assert (again.status, again.body["duplicate"]) == (200, True)
    for i in range(3):
        assert (
            server.call(
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                ops,
                {"function": FN + "add", "args": [i, 1], "jobId": f"add-{i}"},
            ).status
            == 201
        )

    # one job's status: the seed's fields
    job = server.call("GET", f"/api/v1/queues/{Q}/jobs/slow-1", ops).body
    assert (job["name"], job["data"], job["state"], job["priority"]) == (
        FN + "sleep",
        {"args": [1.0], "kwargs": {}},
        "queued",
        1,
    )
    assert (job["attempts"], job["maxAttempts"], job["timeoutSeconds"]) == (0, 2, 30)
    failed = server.call("GET", f"/api/v1/queues/{Q}/jobs/{failed_job}", ops).body
    assert failed["failedReason"] == "ValueError: SMTP relay down"
    assert "Traceback" in failed["stacktrace"]
    assert failed["createdAt"]
    assert failed["finishedAt"]

    # jobs by state, paginated
    page = server.call("GET", f"/api/v1/queues/{Q}/jobs?state=queued&offset=1&limit=2", ops).body
    assert (page["total"], [j["id"] for j in page["jobs"]]) == (4, ["add-0", "add-1"])
    assert [
        j["id"] for j in server.call("GET", f"/api/v1/queues/{Q}/jobs?state=failed", ops).body["jobs"]
    ] == [failed_job]

    # queue stats with live workers while jobs run
    with thread_worker(redis_url, Q, concurrency=2, pod="api-pod"):
        wait_status(redis_conn, Q, "slow-1", "started")
        stats = server.call("GET", f"/api/v1/queues/{Q}", ops).body
        assert stats["workerCount"] == 1
        assert stats["workers"][0]["pod"] == "api-pod"
        assert stats["counts"]["running"] >= 1
        listed = server.call("GET", "/api/v1/queues", ops).body["queues"][0]
        assert (listed["queue"], listed["jobqueue"], listed["priority"], listed["concurrency"]) == (
            Q,
            "emails",
            2,
            4,
        )
        wait_status(redis_conn, Q, "slow-1", "finished")
        wait_for(
            "every add finished",
            lambda: server.call("GET", f"/api/v1/queues/{Q}", ops).body["counts"]["queued"] == 0,
        )
    finished = server.call("GET", f"/api/v1/queues/{Q}/jobs?state=finished", ops).body
    assert finished["total"] == 4
    assert server.call("GET", f"/api/v1/queues/{Q}/jobs/add-2", ops).body["result"] == 3

    # pause / resume
    paused = server.call("POST", f"/api/v1/queues/{Q}/pause", ops).body
    assert paused["paused"] is True
    assert server.call("GET", f"/api/v1/queues/{Q}", ops).body["paused"] is True
    resumed = server.call("POST", f"/api/v1/queues/{Q}/resume", ops).body
    assert (resumed["paused"], resumed["wasPaused"]) == (False, True)

    # retry, remove
    assert server.call("POST", f"/api/v1/queues/{Q}/jobs/{failed_job}/retry", ops).body["state"] == "queued"
    removed = server.call("DELETE", f"/api/v1/queues/{Q}/jobs/{failed_job}", ops)
    assert (removed.status, removed.body["previousState"]) == (200, "queued")
    assert server.call("GET", f"/api/v1/queues/{Q}/jobs/{failed_job}", ops).status == 404

    # probes and the generated OpenAPI document
    assert server.call("GET", "/readyz").status == 200
    assert server.call("GET", "/openapi.json").body["info"]["title"] == "jobqueue admin API"


def test_bad_input_gets_a_4xx_that_says_why_and_changes_nothing(
    server: ApiServer, ops: str, failed_job: str, redis_conn: redis.Redis, redis_url: str
) -> None:
    enqueue(Q, FN + "sleep", 12, job_id="busy", connection=redis_conn)  # running through every case
    enqueue(Q, FN + "noop", job_id="done", connection=redis_conn)
    with thread_worker(redis_url, Q, concurrency=2):
        wait_status(redis_conn, Q, "busy", "started")
        wait_status(redis_conn, Q, "done", "finished")
        before = redis_state(redis_conn)
        cases = [
            ("GET", "/api/v1/queues/nope", None, 404, "queue 'nope' is not declared"),
            ("GET", "/api/v1/queues/nope/jobs?state=failed", None, 404, "queue 'nope' is not declared"),
            ("POST", "/api/v1/queues/nope/pause", None, 404, "queue 'nope' is not declared"),
            ("GET", f"/api/v1/queues/{Q}/jobs/missing", None, 404, "no job 'missing' in queue 'ops:emails'"),
            ("POST", f"/api/v1/queues/{Q}/jobs/missing/retry", None, 404, "no job 'missing'"),
            ("DELETE", f"/api/v1/queues/{Q}/jobs/missing", None, 404, "no job 'missing'"),
            ("GET", f"/api/v1/queues/{Q}/jobs/bad%20id!", None, 422, "String should match pattern"),
            ("POST", f"/api/v1/queues/{Q}/jobs/done/retry", None, 409, "is finished; only failed jobs"),
            ("DELETE", f"/api/v1/queues/{Q}/jobs/busy", None, 409, "is running"),
            ("GET", f"/api/v1/queues/{Q}/jobs?state=bogus", None, 422, "Input should be 'queued'"),
            ("GET", f"/api/v1/queues/{Q}/jobs?state=failed&limit=0", None, 422, "greater than or equal to 1"),
            ("GET", f"/api/v1/queues/{Q}/jobs?state=failed&offset=x", None, 422, "valid integer"),
            ("POST", f"/api/v1/queues/{Q}/jobs", {"function": 5}, 422, "Input should be a valid string"),
            (
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                {"function": FN + "add", "args": {"a": 1}},
                422,
                "Input should be a valid list",
            ),
            (
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                {"function": FN + "add", "priority": 9},
                422,
                "less than or equal to 5",
            ),
            (
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                {"function": FN + "add", "options": {"attempts": 0}},
                422,
                "greater than or equal to 1",
            ),
            (
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                {"function": FN + "add", "jobId": "a:b"},
                422,
                "String should match pattern",
            ),
            (
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                {"function": FN + "add", "colour": "red"},
                422,
                "Extra inputs are not permitted",
            ),
            (
                "POST",
                f"/api/v1/queues/{Q}/jobs",
                {"function": "not a function"},
                400,
                "function must be a @job function or its dotted name",
            ),
        ]
        for method, path, body, status, message in cases:
            reply = server.call(method, path, ops, body)
            assert reply.status == status, (method, path, reply.body)
            assert message in str(reply.body["detail"]), (method, path, reply.body)
        not_json = server.call("POST", f"/api/v1/queues/{Q}/jobs", ops, raw=b"{not json")
        assert not_json.status == 422
        assert "JSON decode error" in str(not_json.body["detail"])
        after = redis_state(redis_conn)

    # the worker's own bookkeeping (heartbeats) moves on: compare everything but worker records
    # and the lease scores of the running job
    def steady(state: dict[bytes, object]) -> dict[bytes, object]:
        moving = (b"rq:worker:", b"rq:wip:", b"rq:job:busy")
        return {k: v for k, v in state.items() if not k.startswith(moving)}

    assert steady(after) == steady(before)
    assert get_job(Q, "busy", connection=redis_conn).status == "finished"  # the refused remove left it


def test_the_queue_list_follows_rbac_per_namespace_and_per_object(
    *, server: ApiServer, ops: str, cluster: devenv.Cluster, namespace: str, redis_conn: redis.Redis
) -> None:
    declare(redis_conn, Q, namespace, "emails")
    declare(redis_conn, "ops:reports", namespace, "reports")
    declare(redis_conn, "elsewhere:queue", "other-namespace", "theirs")
    single = service_account(
        cluster,
        namespace,
        "single",
        [
            {
                "apiGroups": ["jobqueue.glec.io"],
                "resources": ["jobqueues"],
                "resourceNames": ["emails"],
                "verbs": ["get"],
            }
        ],
    )
    # `list jobqueues` in the namespace: all of its queues, none of another namespace
    assert [q["queue"] for q in server.call("GET", "/api/v1/queues", ops).body["queues"]] == [
        Q,
        "ops:reports",
    ]
    # `get` on one JobQueue only: that queue
    assert [q["queue"] for q in server.call("GET", "/api/v1/queues", single).body["queues"]] == [Q]
    assert server.call("GET", "/api/v1/queues/ops:reports", single).status == 403


def test_bulk_retry_and_remove(
    *, server: ApiServer, ops: str, viewer: str, failed_job: str, redis_conn: redis.Redis
) -> None:
    refused = server.call("POST", f"/api/v1/queues/{Q}/bulk/retry", viewer, {"state": "failed"})
    assert refused.status == 403, refused.body
    dry = server.call("POST", f"/api/v1/queues/{Q}/bulk/retry", ops, {"state": "failed", "dryRun": True})
    assert dry.status == 200, dry.body
    assert (dry.body["matched"], dry.body["done"], dry.body["dryRun"]) == (1, 1, True)
    assert dry.body["ids"] == [failed_job]
    assert get_job(Q, failed_job, connection=redis_conn).status == "failed"
    young = server.call(
        "POST", f"/api/v1/queues/{Q}/bulk/retry", ops, {"state": "failed", "olderThanSeconds": 3600}
    )
    assert (young.status, young.body["matched"], young.body["done"]) == (200, 0, 0), young.body
    done = server.call("POST", f"/api/v1/queues/{Q}/bulk/retry", ops, {"state": "failed"})
    assert (done.status, done.body["done"]) == (200, 1), done.body
    assert get_job(Q, failed_job, connection=redis_conn).status == "queued"
    bad = server.call("POST", f"/api/v1/queues/{Q}/bulk/remove", ops, {"state": "started"})
    assert bad.status == 400, bad.body
    assert "a running job is cancelled instead" in bad.body["detail"]
    purged = server.call("POST", f"/api/v1/queues/{Q}/bulk/remove", ops, {"state": "queued"})
    assert (purged.status, purged.body["done"], purged.body["ids"]) == (200, 1, [failed_job]), purged.body
    assert not redis_conn.exists(f"rq:job:{failed_job}")


def test_cancel(*, server: ApiServer, ops: str, viewer: str, redis_conn: redis.Redis, namespace: str) -> None:
    declare(redis_conn, Q, namespace, "emails", attempts=3)
    enqueue(Q, FN + "noop", job_id="later", delay=60, connection=redis_conn)
    assert server.call("POST", f"/api/v1/queues/{Q}/jobs/later/cancel", viewer).status == 403
    done = server.call("POST", f"/api/v1/queues/{Q}/jobs/later/cancel", ops)
    assert done.status == 200, done.body
    assert (done.body["previousState"], done.body["stopping"]) == ("scheduled", False)
    info = get_job(Q, "later", connection=redis_conn)
    assert (info.status, info.failed_reason) == (
        "canceled",
        f"canceled by system:serviceaccount:{namespace}:ops before it started",
    )
    again = server.call("POST", f"/api/v1/queues/{Q}/jobs/later/cancel", ops)
    assert again.status == 409, again.body


def test_enqueue_with_depends_on(
    *, server: ApiServer, ops: str, redis_conn: redis.Redis, namespace: str
) -> None:
    declare(redis_conn, Q, namespace, "emails")
    enqueue(Q, FN + "noop", job_id="first", connection=redis_conn)
    body = {"function": FN + "noop", "jobId": "second", "dependsOn": ["first"], "allowFailure": True}
    added = server.call("POST", f"/api/v1/queues/{Q}/jobs", ops, body)
    assert (added.status, added.body["state"]) == (201, "deferred"), added.body
    assert redis_conn.smembers("rq:job::second:dependencies") == {b"first"}
    unknown = server.call(
        "POST", f"/api/v1/queues/{Q}/jobs", ops, {"function": FN + "noop", "dependsOn": ["nope"]}
    )
    assert unknown.status == 400, unknown.body
    assert "depends on 'nope', which is no job" in unknown.body["detail"]
