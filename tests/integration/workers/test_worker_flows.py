"""Flows (issue 21, item 4) against real Redis with real workers: a parent enqueued with its
children in one call waits for them, reads their results, fails when one fails (runs with
allow_failure), runs once when a worker dies mid-flow; plain RQ's depends_on still works."""

from __future__ import annotations

import json

import pytest
import redis
import rq
import rq.job
from rq.serializers import JSONSerializer

from integration.workers.whelpers import FN, jq, publish, thread_worker, wait_for, wait_status, worker_process
from jobqueue import InvalidJobError, JobSpec, cancel, enqueue, enqueue_flow, get_job
from jobqueue.client import MAX_FLOW_CHILDREN

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def _flow(
    conn: redis.Redis, queue: str, *, fail: bool = False, allow: bool = False, own: bool = True
) -> None:
    children = [JobSpec(FN + "add", (1, 2), job_id="c1"), JobSpec(FN + "add", (10, 20), job_id="c2")]
    if fail:
        children.append(JobSpec(FN + "always_fail", ("no luck",), job_id="c3"))
    parent = JobSpec(FN + "gather", (own,), job_id="p", allow_failure=allow)
    flow = enqueue_flow(queue, parent, children, connection=conn)
    assert (flow.parent.id, flow.parent.status) == ("p", "deferred")
    assert [c.status for c in flow.children] == ["queued"] * len(children)


@pytest.mark.parametrize("mode", ["thread", "async", "process"])
def test_parent_runs_after_children_and_reads_results(
    redis_conn: redis.Redis, redis_url: str, mode: str
) -> None:
    publish(redis_conn, "f")
    # process mode: the real `jobqueue worker` command; the parent reads through $JOBQUEUE_REDIS_URL
    _flow(redis_conn, "f", own=mode != "process")
    assert get_job("f", "p", connection=redis_conn).status == "deferred"
    runner = (
        worker_process(redis_url, "f", concurrency=2)
        if mode == "process"
        else thread_worker(redis_url, "f", mode=mode)
    )
    with runner:
        info = wait_status(redis_conn, "f", "p", "finished")
    assert info.result == {"results": {"c1": 3, "c2": 30}, "ended": {"c1": "finished", "c2": "finished"}}
    for child in ("c1", "c2"):  # the parent started only after each child had ended
        assert get_job("f", child, connection=redis_conn).finished_at <= info.started_at
    assert redis_conn.lrange("test:runs", 0, -1) == [b"gather:p"]


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_failed_child_fails_the_parent(redis_conn: redis.Redis, redis_url: str, mode: str) -> None:
    publish(redis_conn, "f")
    _flow(redis_conn, "f", fail=True)
    runner = worker_process(redis_url, "f") if mode == "process" else thread_worker(redis_url, "f", mode=mode)
    with runner:
        info = wait_status(redis_conn, "f", "p", "failed")
        wait_status(redis_conn, "f", "c2", "finished")
    assert info.failed_reason == "not run: its dependency c3 failed (RQ's depends_on without allow_failure)"
    assert redis_conn.lrange("test:runs", 0, -1) == []  # the parent never ran


def test_allow_failure_runs_the_parent_with_what_failed(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    _flow(redis_conn, "f", fail=True, allow=True)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "p", "finished")
    assert info.result == {
        "results": {"c1": 3, "c2": 30},
        "ended": {"c1": "finished", "c2": "finished", "c3": "failed"},
    }


def test_canceled_child_fails_the_parent(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    _flow(redis_conn, "f")
    cancel("f", "c2", connection=redis_conn)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "p", "failed")
    assert (
        info.failed_reason
        == "not run: its dependency c2 was canceled (RQ's depends_on without allow_failure)"
    )


def test_allow_failure_counts_a_canceled_child_as_ended(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    _flow(redis_conn, "f", allow=True)
    cancel("f", "c2", connection=redis_conn)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "p", "finished")
    assert info.result == {"results": {"c1": 3}, "ended": {"c1": "finished", "c2": "canceled"}}


def test_depends_on_existing_jobs_and_bad_input(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    enqueue("f", FN + "add", 2, 3, job_id="a", connection=redis_conn)
    child = enqueue("f", FN + "gather", job_id="b", depends_on=["a"], connection=redis_conn)
    assert child.status == "deferred"
    with pytest.raises(InvalidJobError, match="job 'x' depends on 'nope', which is no job"):
        enqueue("f", FN + "noop", job_id="x", depends_on=["a", "nope"], connection=redis_conn)
    with pytest.raises(InvalidJobError, match=r"which is no job.*nothing was enqueued"):
        enqueue_flow(
            "f",
            JobSpec(FN + "noop", job_id="p2", depends_on=["nope"]),
            [JobSpec(FN + "noop", job_id="k")],
            connection=redis_conn,
        )
    assert not redis_conn.exists("rq:job:x", "rq:job:p2", "rq:job:k")  # all or nothing
    with pytest.raises(InvalidJobError, match="dependency cycle: k1 -> k2 -> k1"):
        enqueue_flow(
            "f",
            JobSpec(FN + "noop"),
            [
                JobSpec(FN + "noop", job_id="k1", depends_on=["k2"]),
                JobSpec(FN + "noop", job_id="k2", depends_on=["k1"]),
            ],
            connection=redis_conn,
        )
    with pytest.raises(InvalidJobError, match=f"at most {MAX_FLOW_CHILDREN} children"):
        enqueue_flow(
            "f", JobSpec(FN + "noop"), [JobSpec(FN + "noop")] * (MAX_FLOW_CHILDREN + 1), connection=redis_conn
        )
    with pytest.raises(InvalidJobError, match="cannot depend on itself"):
        enqueue("f", FN + "noop", job_id="s", depends_on=["s"], connection=redis_conn)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "b", "finished")
        # a dependency that has ended already: the new job is queued at once
        late = enqueue("f", FN + "gather", job_id="c", depends_on=["a"], connection=redis_conn)
        assert late.status == "queued"
        wait_status(redis_conn, "f", "c", "finished")
    assert info.result == {"results": {"a": 5}, "ended": {"a": "finished"}}
    # nothing left behind: the links go once they are settled
    assert not redis_conn.exists("rq:job:a:dependents", "rq:job::b:dependencies", "rq:job::c:dependencies")


def test_cli_depends_on(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    enqueue("f", FN + "add", 1, 1, job_id="a", connection=redis_conn)
    run = jq(
        redis_url,
        "enqueue",
        "f",
        FN + "gather",
        "--job-id",
        "b",
        "--depends-on",
        "a",
        "--allow-failure",
        "-o",
        "json",
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "deferred"
    assert redis_conn.hget("rq:job:b", "allow_dependency_failures") == b"1"
    bad = jq(redis_url, "enqueue", "f", FN + "noop", "--depends-on", "nope")
    assert bad.returncode == 2
    assert "depends on 'nope', which is no job" in bad.stderr
    lone = jq(redis_url, "enqueue", "f", FN + "noop", "--allow-failure")
    assert (lone.returncode, "--allow-failure needs --depends-on" in lone.stderr) == (2, True)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "b", "finished")
    assert info.result["results"] == {"a": 2}


def test_plain_rq_producer_depends_on(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    q = rq.Queue("f", connection=redis_conn, serializer=JSONSerializer)
    first = q.enqueue(FN + "add", 4, 5, job_id="r1")
    second = q.enqueue(FN + "gather", depends_on=first, job_id="r2")
    bad = q.enqueue(FN + "always_fail", "x", job_id="r3")
    third = q.enqueue(
        FN + "gather", depends_on=rq.job.Dependency([bad, first], allow_failure=True), job_id="r4"
    )
    fourth = q.enqueue(FN + "gather", depends_on=[bad], job_id="r5")
    assert {j.get_status() for j in (second, third, fourth)} == {"deferred"}
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "r2", "finished")
        allowed = wait_status(redis_conn, "f", "r4", "finished")
        failed = wait_status(redis_conn, "f", "r5", "failed")
    assert info.result == {"results": {"r1": 9}, "ended": {"r1": "finished"}}
    assert allowed.result == {"results": {"r1": 9}, "ended": {"r3": "failed", "r1": "finished"}}
    assert failed.failed_reason == "not run: its dependency r3 failed (RQ's depends_on without allow_failure)"


def test_worker_killed_mid_flow_runs_nothing_twice(redis_conn: redis.Redis, redis_url: str) -> None:
    """The pod running the children dies; recovery re-queues them; the parent runs once."""
    from jobqueue import recovery

    publish(redis_conn, "f", attempts=3)
    children = [JobSpec(FN + "mark_after", (f"c{i}", 0.5), job_id=f"c{i}") for i in range(3)]
    enqueue_flow("f", JobSpec(FN + "gather", job_id="p"), children, connection=redis_conn)
    with worker_process(redis_url, "f", pod="pod-dies", concurrency=3) as w:
        wait_for("children started", lambda: redis_conn.llen("test:started") >= 3)
        w.kill_pod()
    assert redis_conn.llen("test:marks") == 0  # killed mid-flow: no child had finished
    recovery.recover_pod(redis_conn, "f", "pod-dies", reason="pod deleted")
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "p", "finished")
    assert redis_conn.lrange("test:runs", 0, -1) == [b"gather:p"]
    assert set(info.result["ended"].values()) == {"finished"}
    assert {get_job("f", f"c{i}", connection=redis_conn).attempts_made for i in range(3)} == {2}


def _running_on(conn: redis.Redis, queue: str, pod: str) -> bool:
    running = [m.decode().split(":")[0] for m in conn.zrange(f"rq:wip:{queue}", 0, -1)]
    return any(get_job(queue, j, connection=conn).pod == pod for j in running)


def test_batch_callback_fires_exactly_once_under_pod_kills(redis_conn: redis.Redis, redis_url: str) -> None:
    """A batch (Sidekiq Batches' shape) is a flow whose parent has allow_failure: the callback
    runs once every job has ended, however. Two of three pods die mid-batch; recovery
    re-queues their jobs; the callback is queued once, by the step that records the last end."""
    from jobqueue import recovery

    publish(redis_conn, "b", attempts=3)
    jobs = [JobSpec(FN + "mark_after", (f"j{i}", 0.3), job_id=f"j{i}") for i in range(24)]
    jobs.append(JobSpec(FN + "always_fail", ("bad row",), job_id="bad"))
    callback = JobSpec(FN + "gather", job_id="done", allow_failure=True)
    enqueue_flow("b", callback, jobs, connection=redis_conn)
    with (
        worker_process(redis_url, "b", pod="pod-a", concurrency=2) as a,
        worker_process(redis_url, "b", pod="pod-b", concurrency=2) as b,
        worker_process(redis_url, "b", pod="pod-c", concurrency=2),
    ):
        for pod in (a, b):
            wait_for(f"a job running on {pod.pod}", lambda p=pod.pod: _running_on(redis_conn, "b", p))
            pod.kill_pod()
            recovery.recover_pod(redis_conn, "b", pod.pod, reason="pod deleted")
        info = wait_status(redis_conn, "b", "done", "finished", timeout=60)
    assert redis_conn.lrange("test:runs", 0, -1) == [b"gather:done"]  # once
    ended = info.result["ended"]
    assert (len(ended), ended["bad"]) == (25, "failed")
    assert {s for j, s in ended.items() if j != "bad"} == {"finished"}
    retried = [i for i in range(24) if get_job("b", f"j{i}", connection=redis_conn).attempts_made > 1]
    assert retried  # the kills hit running jobs
    last_end = max(get_job("b", j, connection=redis_conn).finished_at for j in ended)
    assert last_end <= info.started_at


def test_a_child_whose_record_is_gone_reads_as_none(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "f")
    kept = JobSpec(FN + "add", (1, 2), job_id="kept")
    gone = JobSpec(FN + "add", (3, 4), job_id="gone", options={"keep_completed": 0})  # deleted when it ends
    enqueue_flow("f", JobSpec(FN + "gather", job_id="p"), [kept, gone], connection=redis_conn)
    with thread_worker(redis_url, "f"):
        info = wait_status(redis_conn, "f", "p", "finished")
    assert info.result == {"results": {"kept": 3}, "ended": {"kept": "finished", "gone": None}}
