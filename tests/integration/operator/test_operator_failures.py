"""Jobs that failed for good, end to end: a real worker fails them, the real operator turns
the failure stream into a rate-limited, aggregated Event on the JobQueue, a metric, a
notification job on another JobQueue and a webhook POST (URL from a Secret), each carrying
the seed's fields; the API server refuses an invalid spec.failureNotification."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from opkit import RunningOperator, apply, events, jobqueue, wait_for

import devenv
from integration.workers.whelpers import FN, thread_worker, wait_status
from jobqueue import admin, enqueue

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on loopback that keeps every JSON body POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/ops-7f3a", received
    finally:
        server.shutdown()
        server.server_close()


def notifier_reading(conn: redis.Redis, namespace: str) -> None:
    """Wait until the operator's notifier reads this Redis (failures before are not news)."""

    def reading() -> bool:
        try:
            groups = conn.xinfo_groups("jobqueue:exhausted")
        except redis.ResponseError:  # no stream yet
            return False
        names = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in groups}
        return f"jobqueue-operator:{namespace}" in names

    wait_for("the notifier's consumer group", reading, timeout=60)


def job_failed_events(cluster: devenv.Cluster, namespace: str) -> list[str]:
    return [
        m
        for type_, reason, m in events(cluster, namespace, "emails")
        if reason == "JobFailed" and type_ == "Warning"
    ]


@pytest.mark.slow
def test_failed_for_good_means_an_event_a_metric_a_notification_job_and_a_webhook(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    redis_url: str,
    operator: RunningOperator,
) -> None:
    with webhook_receiver() as (hook_url, received):
        cluster.kubectl(
            "create", "secret", "generic", "ops-webhook", "-n", namespace, f"--from-literal=url={hook_url}"
        )
        apply(cluster, jobqueue("alerts", namespace))
        apply(
            cluster,
            jobqueue(
                "emails",
                namespace,
                jobDefaults={"attempts": 2, "backoff": {"type": "fixed", "delaySeconds": 0.1}},
                failureNotification={
                    "job": {"queue": "alerts", "function": "glec_jobs.notify_admins"},
                    "webhook": {"urlSecretRef": {"name": "ops-webhook", "key": "url"}},
                },
            ),
        )
        emails, alerts = f"{namespace}.emails", f"{namespace}.alerts"
        wait_for(
            "published settings",
            lambda: redis_conn.exists(f"jobqueue:settings:{emails}", f"jobqueue:settings:{alerts}") == 2,
        )
        notifier_reading(redis_conn, namespace)
        for i in range(5):
            enqueue(
                emails,
                FN + "always_fail",
                f"SMTP relay down ({i})",
                job_id=f"mail-{i}",
                connection=redis_conn,
            )
        enqueue(emails, FN + "noop", job_id="fine", connection=redis_conn)
        with thread_worker(redis_url, emails):
            for i in range(5):
                wait_status(redis_conn, emails, f"mail-{i}", "failed")
            wait_status(redis_conn, emails, "fine", "finished")

        # a notification job per failure on the other JobQueue's queue, with the seed's fields
        page = wait_for(
            "five notification jobs",
            lambda: (p := admin.list_jobs(alerts, "queued", connection=redis_conn)).total == 5 and p,
            timeout=30,
        )
        notices = {j.args[0]["details"]["job_id"]: j.args[0] for j in page.jobs}
        assert sorted(notices) == [f"mail-{i}" for i in range(5)]
        assert all(j.function == "glec_jobs.notify_admins" for j in page.jobs)
        first = notices["mail-0"]
        assert (first["type"], first["severity"], first["title"]) == (
            "JOB_FAILED",
            "HIGH",
            f"Job Failed: {FN}always_fail",
        )
        assert first["message"] == f"Job mail-0 in queue {emails} failed after 2 attempts"
        fields = ("queue", "name", "error", "attempts", "max_attempts", "data")
        assert {k: first["details"][k] for k in fields} == {
            "queue": emails,
            "name": FN + "always_fail",
            "error": "ValueError: SMTP relay down (0)",
            "attempts": 2,
            "max_attempts": 2,
            "data": {"args": ["SMTP relay down (0)"], "kwargs": {}},
        }

        # the same notice POSTed to the webhook from the Secret
        wait_for("five webhook calls", lambda: len(received) == 5, timeout=30)
        assert sorted(r["details"]["job_id"] for r in received) == sorted(notices)
        assert next(r for r in received if r["details"]["job_id"] == "mail-0") == first

    # one Event at once for the first failure, the rest held back (rate limit) …
    (message,) = wait_for(
        "the first JobFailed event", lambda: job_failed_events(cluster, namespace), timeout=30
    )
    assert re.fullmatch(
        r"job mail-\d \(integration\.workers\.wjobs\.always_fail\) failed after 2 of 2 "
        r"attempts: ValueError: SMTP relay down \(\d\)",
        message,
    ), message
    # … and the metrics count them all
    scraped = operator.get("/metrics")[1]
    labels = f'jobqueue="emails",namespace="{namespace}",queue="{emails}"'
    assert f"jobqueue_jobs_exhausted_total{{{labels}}} 5.0" in scraped
    for channel in ("job", "webhook"):
        sent = (
            f'jobqueue_failure_notifications_total{{channel="{channel}",jobqueue="emails",'
            f'namespace="{namespace}",outcome="sent",queue="{emails}"}} 5.0'
        )
        assert sent in scraped, scraped
    # … then one aggregated Event for the four held back, when the 30 s window ends
    later = wait_for(
        "the aggregated event",
        lambda: len(job_failed_events(cluster, namespace)) == 2 and job_failed_events(cluster, namespace),
        timeout=60,
    )
    aggregated = next(m for m in later if m != message)
    assert aggregated.startswith("4 more job(s) failed for good in "), aggregated
    assert aggregated.endswith("; and 1 more"), aggregated


def test_a_notification_that_cannot_be_delivered_is_reported(
    *,
    cluster: devenv.Cluster,
    namespace: str,
    redis_conn: redis.Redis,
    redis_url: str,
    operator: RunningOperator,
) -> None:
    apply(
        cluster,
        jobqueue(
            "emails",
            namespace,
            jobDefaults={"attempts": 1},
            failureNotification={
                "job": {"queue": "no-such-queue", "function": "glec_jobs.notify_admins"},
                "webhook": {"urlSecretRef": {"name": "missing-secret", "key": "url"}},
            },
        ),
    )
    emails = f"{namespace}.emails"
    wait_for("published settings", lambda: redis_conn.exists(f"jobqueue:settings:{emails}"))
    notifier_reading(redis_conn, namespace)
    enqueue(emails, FN + "always_fail", "boom", job_id="bad", connection=redis_conn)
    with thread_worker(redis_url, emails):
        wait_status(redis_conn, emails, "bad", "failed")
    problems = wait_for(
        "a FailureNotificationFailed event",
        lambda: [
            m
            for _, reason, m in events(cluster, namespace, "emails")
            if reason == "FailureNotificationFailed"
        ],
        timeout=30,
    )
    # (one Event: the second problem of the same failure falls in the same rate-limit window)
    assert problems == [
        f"job notification of job bad not delivered: spec.failureNotification.job.queue: "
        f"no JobQueue 'no-such-queue' in namespace {namespace}"
    ], problems
    scraped = operator.get("/metrics")[1]
    for channel in ("job", "webhook"):
        failed = (
            f'jobqueue_failure_notifications_total{{channel="{channel}",jobqueue="emails",'
            f'namespace="{namespace}",outcome="failed",queue="{emails}"}} 1.0'
        )
        assert failed in scraped, scraped


@pytest.mark.parametrize(
    ("notification", "message"),
    [
        ({}, "failureNotification needs job, webhook or both"),
        (
            {"job": {"queue": "Alerts!", "function": "glec_jobs.notify_admins"}},
            "failureNotification.job.queue must be the name of a JobQueue",
        ),
        (
            {"job": {"queue": "alerts", "function": "notify_admins"}},
            "failureNotification.job.function must be a dotted function name",
        ),
        ({"webhook": {"urlSecretRef": {"name": "ops-webhook"}}}, "Required value"),
    ],
)
def test_the_api_server_refuses_an_invalid_failure_notification(
    cluster: devenv.Cluster, namespace: str, crds: None, notification: dict[str, Any], message: str
) -> None:
    body = jobqueue("emails", namespace, failureNotification=notification)
    refused = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
