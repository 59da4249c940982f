"""A worker takes jobs only from a queue its own JobQueue published (issue 20).

Regression: workers never checked whose settings they read, so a JobQueue naming another
tenant's queue got workers, running its own image, that took the other tenant's jobs and
arguments. Real Redis, the real ``jobqueue worker`` command with a pod's environment.
"""

from __future__ import annotations

import time

import redis

from integration.workers.whelpers import FN, JOBS, WorkerProcess, wait_for, wait_status
from jobqueue import enqueue, get_job, settings
from jobqueue.worker import SETTINGS_REFRESH_SECONDS


def publish_as(conn: redis.Redis, queue: str, namespace: str, jobqueue: str) -> None:
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {"queueName": queue, "namespace": namespace, "jobqueue": jobqueue, "imports": [JOBS]}
        ),
    )


def pod_env(namespace: str, jobqueue: str) -> dict[str, str]:
    return {settings.OWNER_NAMESPACE_ENV: namespace, settings.OWNER_NAME_ENV: jobqueue}


def test_a_worker_refuses_another_jobqueues_queue(redis_conn: redis.Redis, redis_url: str) -> None:
    publish_as(redis_conn, "payroll", "finance", "payroll")
    enqueue("payroll", FN + "add", 1, 2, job_id="salary-1", connection=redis_conn)
    thief = WorkerProcess(
        redis_url, "payroll", pod="thief-1", mode="thread", env=pod_env("mallory", "payroll")
    )
    try:
        wait_for(
            "the refusal in its log",
            lambda: "belongs to another JobQueue than mallory/payroll" in thief.log(),
            timeout=30,
        )
        assert get_job("payroll", "salary-1", connection=redis_conn).status == "queued"
        assert "finance" not in thief.log()  # says nothing about whose it is
    finally:
        thief.stop()
    owner = WorkerProcess(
        redis_url, "payroll", pod="payroll-1", mode="thread", env=pod_env("finance", "payroll")
    )
    try:
        wait_status(redis_conn, "payroll", "salary-1", "finished", timeout=30)
    finally:
        owner.stop()


def test_a_running_worker_stops_taking_jobs_when_its_queue_changes_hands(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish_as(redis_conn, "reports", "team-a", "reports")
    worker = WorkerProcess(
        redis_url, "reports", pod="reports-1", mode="thread", env=pod_env("team-a", "reports")
    )
    try:
        enqueue("reports", FN + "add", 1, 1, job_id="r-1", connection=redis_conn)
        wait_status(redis_conn, "reports", "r-1", "finished", timeout=30)
        # team-a renamed its queue away and team-b's JobQueue took the name before the rollout
        publish_as(redis_conn, "reports", "team-b", "reports")
        wait_for("the worker notices", lambda: "belongs to another JobQueue" in worker.log(), timeout=30)
        enqueue("reports", FN + "add", 2, 2, job_id="r-2", connection=redis_conn)
        time.sleep(2 * SETTINGS_REFRESH_SECONDS + 1)  # two rounds of re-reading the settings
        assert get_job("reports", "r-2", connection=redis_conn).status == "queued"
        # its own JobQueue publishes it again: it goes back to work
        publish_as(redis_conn, "reports", "team-a", "reports")
        wait_status(redis_conn, "reports", "r-2", "finished", timeout=30)
    finally:
        worker.stop()


def test_workers_outside_a_pod_take_any_published_queue(redis_conn: redis.Redis, redis_url: str) -> None:
    publish_as(redis_conn, "local", "somewhere", "local")
    enqueue("local", FN + "add", 3, 4, job_id="l-1", connection=redis_conn)
    # no POD_NAMESPACE / JOBQUEUE_NAME: not one of the operator's pods
    worker = WorkerProcess(redis_url, "local", pod="laptop", mode="thread")
    try:
        wait_status(redis_conn, "local", "l-1", "finished", timeout=30)
    finally:
        worker.stop()
