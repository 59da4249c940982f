"""The `jobqueue` command speaking Kubernetes (issue 22): ``-n NAMESPACE JOBQUEUE`` resolved
through the kubeconfig against the real API server, else the settings the operator published,
else the raw queue name; NAMESPACE and JOBQUEUE columns in ``stats``; ``--version``; a missing
Redis URL explained in the CLI's own flags.

No operator runs here: the JobQueues are created with kubectl (the CRDs are the real ones) and
the queues' settings are published as the operator would, so each case controls which source
can answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

import devenv
from integration.workers.whelpers import FN, JOBS, publish, worker_env
from jobqueue import __version__, get_job, settings
from jobqueue.cli import ExitCode

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def jq(redis_url: str | None, *args: str, kubeconfig: Path | str) -> subprocess.CompletedProcess[str]:
    env = worker_env(redis_url or "", "cli")
    if redis_url is None:
        env.pop("JOBQUEUE_REDIS_URL")
    env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def declare(conn: redis.Redis, queue: str, namespace: str | None = None, jobqueue: str | None = None) -> None:
    """Publish a queue's settings as the operator does (with its namespace and JobQueue), or as
    by hand (without)."""
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {"queueName": queue, "imports": [JOBS], "namespace": namespace, "jobqueue": jobqueue}
        ),
    )


def jobqueue_body(name: str, namespace: str, queue_name: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "concurrency": 1,
        "worker": {"image": "registry.example/glec-jobs:1.4.2", "imports": [JOBS]},
    }
    if queue_name:
        spec["queueName"] = queue_name
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.mark.k8s
def test_dash_n_names_a_jobqueue_resolved_through_the_kubeconfig(
    cluster: devenv.Cluster, crds: None, namespace: str, redis_conn: redis.Redis, redis_url: str
) -> None:
    queue = f"ei:update-{uuid.uuid4().hex[:6]}"
    for body in (jobqueue_body("ei-update", namespace, queue), jobqueue_body("reports", namespace, None)):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    # published by hand (no namespace, no JobQueue in them): only the API server can tell
    declare(redis_conn, queue)
    declare(redis_conn, f"{namespace}.reports")  # the operator's default queue name
    kubeconfig = cluster.kubeconfig

    added = jq(
        redis_url,
        "-n",
        namespace,
        "enqueue",
        "ei-update",
        FN + "add",
        "--args-json",
        "[1, 2]",
        "--job-id",
        "a",
        kubeconfig=kubeconfig,
    )
    assert added.returncode == 0, added.stderr
    assert f"into {queue}" in added.stdout
    assert get_job(queue, "a", connection=redis_conn).args == [1, 2]
    shown = jq(redis_url, "--namespace", namespace, "status", "reports", "a", kubeconfig=kubeconfig)
    assert shown.returncode == ExitCode.NOT_FOUND  # the queue is found; the job is not in it
    assert f"{namespace}.reports" in shown.stderr
    wide = jq(
        redis_url, "-n", namespace, "stats", "ei-update", "reports", "-o", "wide", kubeconfig=kubeconfig
    )
    assert wide.returncode == 0, wide.stderr
    assert [line.split()[1] for line in wide.stdout.splitlines()[1:]] == [queue, f"{namespace}.reports"]

    # a JobQueue that does not exist, nor a queue of that name: not found, saying what was tried
    ghost = jq(redis_url, "-n", namespace, "stats", "ghost", kubeconfig=kubeconfig)
    assert ghost.returncode == ExitCode.NOT_FOUND
    assert (
        f"no JobQueue {namespace}/ghost: Kubernetes: no JobQueue {namespace}/ghost in the kubeconfig"
        in ghost.stderr
    )


def test_without_kubernetes_the_published_settings_then_the_queue_name_answer(
    redis_conn: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-kubeconfig"
    declare(redis_conn, "reports:generate", namespace="prod", jobqueue="report-generate")
    declare(redis_conn, "ei:update", namespace="prod", jobqueue="ei-update")
    declare(redis_conn, "ei:update:staging", namespace="staging", jobqueue="ei-update")
    declare(redis_conn, "by-hand")  # no JobQueue declares it

    by_settings = jq(
        redis_url, "-n", "prod", "enqueue", "report-generate", FN + "add", "--job-id", "r", kubeconfig=nowhere
    )
    assert by_settings.returncode == 0, by_settings.stderr
    assert "into reports:generate" in by_settings.stdout
    by_name = jq(redis_url, "-n", "prod", "status", "reports:generate", "r", kubeconfig=nowhere)
    assert by_name.returncode == 0, by_name.stderr  # the raw queue name still works with -n
    missing = jq(redis_url, "-n", "prod", "pause", "ghost", kubeconfig=nowhere)
    assert missing.returncode == ExitCode.NOT_FOUND
    assert "no JobQueue prod/ghost: Kubernetes: no kubeconfig" in missing.stderr
    assert "none is named 'ghost'" in missing.stderr

    # stats: NAMESPACE and JOBQUEUE columns; -n shows that namespace only, without the column
    everything = jq(redis_url, "stats", kubeconfig=nowhere).stdout.splitlines()
    assert everything[0].split()[:2] == ["NAMESPACE", "JOBQUEUE"]
    assert sorted(tuple(line.split()[:2]) for line in everything[1:]) == [
        ("-", "by-hand"),
        ("prod", "ei-update"),
        ("prod", "report-generate"),
        ("staging", "ei-update"),
    ]
    prod = jq(redis_url, "-n", "prod", "stats", kubeconfig=nowhere).stdout.splitlines()
    assert prod[0].split()[0] == "JOBQUEUE"
    assert [line.split()[0] for line in prod[1:]] == ["ei-update", "report-generate"]
    as_json = json.loads(jq(redis_url, "stats", "-o", "json", kubeconfig=nowhere).stdout)
    assert (as_json["ei:update:staging"]["namespace"], as_json["ei:update:staging"]["jobqueue"]) == (
        "staging",
        "ei-update",
    )
    assert as_json["by-hand"]["namespace"] is None
    publish(redis_conn, "unused")  # (whelpers' own publish: a queue without owner reads the same)
    assert "unused" in jq(redis_url, "stats", kubeconfig=nowhere).stdout


def test_version_and_a_missing_url_in_the_commands_own_words(tmp_path: Path) -> None:
    version = jq(None, "--version", kubeconfig=tmp_path / "none")
    assert (version.returncode, version.stdout.strip()) == (0, f"jobqueue {__version__}")
    no_url = jq(None, "stats", kubeconfig=tmp_path / "none")
    assert no_url.returncode == ExitCode.USAGE
    assert "no Redis URL: pass --redis-url or set JOBQUEUE_REDIS_URL" in no_url.stderr
    assert "kubectl exec -n NAMESPACE deploy/JOBQUEUE-worker -- jobqueue stats" in no_url.stderr
    assert "connection=" not in no_url.stderr  # (the Python API's word)
