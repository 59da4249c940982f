"""Exactly one job per tick, shown with the real ``jobqueue enqueue`` command of a real CronJob:
run twice for one tick (one after the other, and at the same time), as two overlapping pods
of one Job, as manual runs, and as a real tick of the CronJob controller — the last three
through the pod runner, which runs the pods' commands as local processes (kwok marks a Job's
pod Succeeded at once; the process still runs, once, to its end).

The namespaces enforce the ``restricted`` Pod Security Standard: a CronJob pod that did not
pass it would never be created.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import opkit
import pytest
import redis
import rjkit
from opkit import RunningOperator

import devenv
import images
import podrunner
from jobqueue import client
from jobqueue_operator.builders import cronjob

BIN = Path(sys.executable).parent
WORKER = {"image": images.GLEC_JOBS.ref, "imports": ["glec_jobs"]}


@pytest.fixture
def restricted(cluster: devenv.Cluster, namespace: str) -> str:
    """``namespace``, admitting only pods that pass the restricted Pod Security Standard."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    return namespace


def setup(cluster: devenv.Cluster, namespace: str, *, min_replicas: int = 0, **spec: Any) -> dict[str, Any]:
    """A JobQueue ``analytics`` and RecurringJob ``daily-analytics``; the CronJob once Ready."""
    opkit.apply(
        cluster, opkit.jobqueue("analytics", namespace, worker=WORKER, scaling={"minReplicas": min_replicas})
    )
    opkit.apply(
        cluster, rjkit.recurringjob("daily-analytics", namespace, kwargs={"day": "2026-11-26"}, **spec)
    )
    rjkit.wait_ready(cluster, "daily-analytics", namespace, status="True", reason="Scheduled")
    cron = rjkit.get(cluster, "cronjob", "daily-analytics", namespace)
    assert cron is not None
    return cron


def pod_argv(
    cluster: devenv.Cluster, cron: dict[str, Any], job_name: str
) -> tuple[list[str], dict[str, str]]:
    """The CronJob pod's command and environment as the kubelet would build them for a pod of
    Job ``job_name`` (Secret keys, downward API and ``$(VAR)`` expansion), with this venv's
    ``jobqueue``."""
    container = rjkit.container(cron)
    env: dict[str, str] = {"PATH": f"{BIN}:/usr/bin:/bin"}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            secret = rjkit.get(cluster, "secret", ref["name"], cron["metadata"]["namespace"])
            assert secret is not None, ref
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif var["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{cronjob.JOB_NAME_LABEL}']":
            env[var["name"]] = job_name
        else:
            env[var["name"]] = f"{job_name}-pod"
    return [podrunner.expand(arg, env) for arg in container["command"]], env


def run(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def outputs(*procs: subprocess.Popen[str]) -> list[str]:
    out = []
    for proc in procs:
        text, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, text  # a duplicate is not an error: the pod succeeds
        out.append(text)
    return out


def test_the_pod_command_run_twice_for_one_tick_enqueues_one_job(
    cluster: devenv.Cluster, namespace: str, operator: RunningOperator, redis_conn: redis.Redis
) -> None:
    cron = setup(cluster, namespace)
    queue = f"{namespace}.analytics"
    tick = datetime.datetime(2026, 11, 27, 0, 0, tzinfo=datetime.UTC)
    job_name = cronjob.scheduled_job_name("daily-analytics", tick)
    job_id = cronjob.job_id(namespace, job_name)
    argv, env = pod_argv(cluster, cron, job_name)
    assert argv[-2:] == ["--job-id", f"rj_{namespace}_daily-analytics-29928960"]

    # a retried pod: the same command again, after the first one
    first, retried = outputs(run(argv, env)), outputs(run(argv, env))
    assert first == [f"enqueued job {job_id} into {queue} (status queued)\n"]
    assert retried[0].startswith(f"duplicate: job {job_id} already exists in {queue}")

    # two overlapping pods of the next tick, at the same moment
    next_name = cronjob.scheduled_job_name("daily-analytics", tick + datetime.timedelta(days=1))
    argv, env = pod_argv(cluster, cron, next_name)
    both = outputs(run(argv, env), run(argv, env))
    assert sorted(text.split(":")[0].split(" ")[0] for text in both) == ["duplicate", "enqueued"]

    # one job per tick: the two ids, and no other job of the RecurringJob (a worker pod may
    # already have taken one: count the jobs, not the queued)
    next_id = cronjob.job_id(namespace, next_name)
    keys = {k.decode() for k in redis_conn.scan_iter(match="rq:job:rj_*", count=1000)}
    assert keys == {f"rq:job:{job_id}", f"rq:job:{next_id}"}
    job = client.get_job(queue, job_id, connection=redis_conn)
    assert (job.function, job.args, job.kwargs) == ("glec_jobs.daily_aggregate", [], {"day": "2026-11-26"})


def pod_logs(runner: podrunner.PodRunner, namespace: str, prefix: str, count: int) -> list[str]:
    """The logs of the ``count`` pods named ``prefix…`` once their processes have exited."""

    def done() -> list[str] | None:
        pods = [p for p in runner.snapshot() if p.namespace == namespace and p.name.startswith(prefix)]
        if len(pods) < count or any(p.last_exit_code is None for p in pods):
            return None
        assert all(p.last_exit_code == 0 for p in pods), [p.log_file.read_text() for p in pods]
        return [p.log_file.read_text() for p in pods]

    logs: list[str] = opkit.wait_for(f"{count} pod(s) {namespace}/{prefix}* ran", done)
    return logs


def test_overlapping_pods_enqueue_once_and_manual_runs_get_their_own_ids(
    cluster: devenv.Cluster,
    restricted: str,
    operator: RunningOperator,
    pod_runner: podrunner.PodRunner,
    redis_conn: redis.Redis,
) -> None:
    namespace = restricted
    cron = setup(cluster, namespace)
    queue = f"{namespace}.analytics"

    # the Job of one tick with two pods at once (as a retry racing a slow first pod would be)
    tick_job = cronjob.scheduled_job_name(
        "daily-analytics", datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
    )
    template = cron["spec"]["jobTemplate"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": tick_job, "namespace": namespace},
        "spec": {**template["spec"], "parallelism": 2, "completions": 2},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(job))
    logs = pod_logs(pod_runner, namespace, f"{tick_job}-", 2)
    tick_id = cronjob.job_id(namespace, tick_job)
    assert sum(f"enqueued job {tick_id}" in log for log in logs) == 1, logs
    assert sum(f"duplicate: job {tick_id}" in log for log in logs) == 1, logs

    # manual runs outside any tick: each its own id, each enqueued
    for run_name in ("manual-a", "manual-b"):
        cluster.kubectl("create", "job", run_name, "-n", namespace, "--from=cronjob/daily-analytics")
        (log,) = pod_logs(pod_runner, namespace, f"{run_name}-", 1)
        assert f"enqueued job rj_{namespace}_{run_name} into {queue}" in log, log
    for job_id in (tick_id, f"rj_{namespace}_manual-a", f"rj_{namespace}_manual-b"):
        assert client.get_job(queue, job_id, connection=redis_conn).function == "glec_jobs.daily_aggregate"


def test_a_tick_of_the_cronjob_enqueues_one_job_that_a_worker_runs(
    cluster: devenv.Cluster,
    restricted: str,
    operator: RunningOperator,
    pod_runner: podrunner.PodRunner,
    redis_conn: redis.Redis,
) -> None:
    """End to end: the CronJob controller's tick → the pod (pod runner) → Redis → a worker
    (pod runner) → the RecurringJob's status. A tick comes within a minute."""
    namespace = restricted
    setup(cluster, namespace, min_replicas=1, schedule="* * * * *")
    # and one whose job fails (a retention of 0 days is refused by the job itself)
    opkit.apply(
        cluster,
        rjkit.recurringjob(
            "cleanup",
            namespace,
            schedule="* * * * *",
            function="glec_jobs.cleanup_old_data",
            kwargs={"retention_days": {"api_logs": 0}},
            jobOptions={"attempts": 1},
        ),
    )
    queue = f"{namespace}.analytics"

    def outcome(name: str, expected: str) -> dict[str, Any] | None:
        rj = rjkit.get(cluster, "rj", name, namespace) or {}
        return rj if rj.get("status", {}).get("lastJobStatus") == expected else None

    rj = opkit.wait_for("a tick's job finished", lambda: outcome("daily-analytics", "finished"), timeout=100)
    # (its first tick may be a minute after the other's: a CronJob created after a minute's
    # start gets that minute's tick only when the next one comes)
    failed = opkit.wait_for("the other tick's job failed", lambda: outcome("cleanup", "failed"), timeout=100)
    for name in ("daily-analytics", "cleanup"):  # no more ticks while we look
        cluster.kubectl(
            "patch", "rj", name, "-n", namespace, "--type=merge", "-p", '{"spec": {"suspend": true}}'
        )
    event = rjkit.wait_event(cluster, namespace, "cleanup", "JobFailed")
    assert event[0] == "Warning"
    assert failed["status"]["lastJobId"] in event[2]
    status = rj["status"]
    tick = datetime.datetime.fromisoformat(status["lastScheduleTime"].replace("Z", "+00:00"))
    job_name = cronjob.scheduled_job_name("daily-analytics", tick)
    assert status["lastJobId"] == cronjob.job_id(namespace, job_name)
    job = client.get_job(queue, status["lastJobId"], connection=redis_conn)
    assert job.status == "finished"
    assert job.result["type"] == "daily"
    (log,) = pod_logs(pod_runner, namespace, f"{job_name}-", 1)
    assert f"enqueued job {status['lastJobId']} into {queue}" in log
