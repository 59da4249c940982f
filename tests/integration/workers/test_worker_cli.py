"""The `jobqueue` command against real Redis: what a CronJob pod and a person run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import yaml

from integration.workers.whelpers import (
    FN,
    JOBS,
    jq,
    publish,
    thread_worker,
    wait_for,
    wait_status,
    worker_env,
)
from jobqueue import enqueue, get_job
from jobqueue.cli import ExitCode


def test_enqueue_is_idempotent_for_cron_ticks(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "analytics", attempts=2)
    args = [
        "enqueue",
        "analytics",
        FN + "add",
        "--args-json",
        "[1, 2]",
        "--options-json",
        '{"attempts": 4, "timeoutSeconds": 60}',
        "--job-id",
        "rj-daily-20260101T000000Z",
    ]
    first = jq(redis_url, *args)
    assert first.returncode == 0, first.stderr
    assert "enqueued job rj-daily-20260101T000000Z into analytics (status queued)" in first.stdout
    again = jq(redis_url, *args)
    assert again.returncode == 0, again.stderr
    assert (
        "duplicate: job rj-daily-20260101T000000Z already exists in analytics (status queued)" in again.stdout
    )
    assert redis_conn.llen("rq:queue:analytics") == 1
    info = get_job("analytics", "rj-daily-20260101T000000Z", connection=redis_conn)
    assert (info.args, info.attempts, info.timeout_seconds) == ([1, 2], 4, 60)


def test_enqueue_errors(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "q")
    bad_json = jq(redis_url, "enqueue", "q", FN + "add", "--args-json", "[1,")
    assert bad_json.returncode == 2
    assert "--args-json" in bad_json.stderr
    assert "not valid JSON" in bad_json.stderr
    not_array = jq(redis_url, "enqueue", "q", FN + "add", "--args-json", '{"a": 1}')
    assert not_array.returncode == 2
    assert "must be a JSON array" in not_array.stderr
    unknown = jq(redis_url, "enqueue", "nope", FN + "add")
    assert unknown.returncode == ExitCode.NOT_FOUND
    assert "queue 'nope' is not declared" in unknown.stderr
    bad_option = jq(redis_url, "enqueue", "q", FN + "add", "--options-json", '{"attempts": 0}')
    assert bad_option.returncode == ExitCode.USAGE  # a CronJob fails at once: a retry cannot help
    assert "invalid job options: attempts" in bad_option.stderr
    no_redis = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "--redis-url", "redis://127.0.0.1:1/0", "stats"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert no_redis.returncode == ExitCode.REDIS
    assert "cannot reach Redis" in no_redis.stderr


def test_status_wait_retry_remove_and_stats(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "ops", attempts=1)
    enqueue("ops", FN + "with_progress", 4, 0.1, job_id="good", connection=redis_conn)
    enqueue("ops", FN + "always_fail", "kaput", job_id="bad", connection=redis_conn)
    enqueue("ops", FN + "noop", job_id="later", delay=600, connection=redis_conn)
    with thread_worker(redis_url, "ops", concurrency=2):
        waited = jq(redis_url, "wait", "ops", "good", "--timeout", "30")
        assert waited.returncode == 0, waited.stderr
        assert "job good finished" in waited.stdout
        assert "100%" in waited.stderr  # the progress bar
        wait_status(redis_conn, "ops", "bad", "failed")
        failed = jq(redis_url, "wait", "ops", "bad")
        assert failed.returncode == ExitCode.FAILED
        assert "ValueError: kaput" in failed.stderr

        status = jq(redis_url, "status", "ops", "bad", "--trace")
        assert status.returncode == 0
        for text in ("failed", "ValueError: kaput", "1 of 1", "Traceback"):
            assert text in status.stdout
        as_json = json.loads(jq(redis_url, "status", "ops", "good", "--json").stdout)
        assert as_json["status"] == "finished"
        assert as_json["progress"] == 100

        stats = jq(redis_url, "stats", "--workers")
        assert stats.returncode == 0
        assert "ops" in stats.stdout
        assert "pod-t" in stats.stdout
        data = json.loads(jq(redis_url, "stats", "ops", "--json").stdout)
        assert data["ops"]["failed"] == 1
        assert data["ops"]["scheduled"] == 1

    retried = jq(redis_url, "retry", "ops", "bad")
    assert retried.returncode == 0
    assert "is queued again" in retried.stdout
    not_failed = jq(redis_url, "retry", "ops", "good")
    assert not_failed.returncode == ExitCode.FAILED
    assert "only failed jobs can be retried" in not_failed.stderr
    removed = jq(redis_url, "remove", "ops", "later")
    assert removed.returncode == 0
    assert "removed job later (it was scheduled)" in removed.stdout
    missing = jq(redis_url, "status", "ops", "later")
    assert missing.returncode == ExitCode.NOT_FOUND
    assert "no job 'later' in queue 'ops'" in missing.stderr
    timeout = jq(redis_url, "wait", "ops", "bad", "--timeout", "0.5")  # queued, no worker running
    assert timeout.returncode == ExitCode.TIMEOUT


def test_unknown_queue_in_stats(redis_conn: redis.Redis, redis_url: str) -> None:
    out = jq(redis_url, "stats", "ghost")
    assert out.returncode == ExitCode.NOT_FOUND
    assert "queue 'ghost' is not declared" in out.stderr
    assert jq(redis_url, "stats").stdout.strip() == "no queues are declared in this Redis"


#: The seed's longest queue names, as `stats` shows them.
SEED_QUEUES = ("analytics:aggregate", "dispatch:optimize", "notification:send", "cleanup:old-data")


def test_stats_fits_80_columns_and_survives_a_pipe(redis_conn: redis.Redis, redis_url: str) -> None:
    for q in SEED_QUEUES:
        publish(redis_conn, q)
    for i in range(12345):  # five-digit counts, as in a real backlog
        redis_conn.rpush("rq:queue:analytics:aggregate", f"filler-{i}")
    table = jq(redis_url, "stats")  # captured: stdout is a pipe, as in `jobqueue stats | grep`
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "JOBQUEUE", "QUEUED", "RUNNING", "FAILED", "WORKERS", "OLDEST"]
    assert max(len(line) for line in lines) <= 80, table.stdout
    assert "…" not in table.stdout
    # (published by hand, as by no JobQueue: NAMESPACE "-" and the queue's own name)
    row = next(line for line in lines if line.startswith("-   ") and " analytics:aggregate " in line)
    assert row.split()[2] == "12345"  # whole names and numbers, columns aligned
    start = lines[0].index("QUEUED")
    assert all(line[start - 3 : start] == "   " and line[start] != " " for line in lines)

    wide = jq(redis_url, "stats", "-o", "wide").stdout.splitlines()
    for column in (
        "QUEUE",
        "BY PRIORITY 1-5",
        "SCHEDULED",
        "DUE",
        "LOST",
        "FINISHED",
        "SLOTS BUSY",
        "LAST ACTIVITY",
    ):
        assert column in wide[0]
    as_json = json.loads(jq(redis_url, "stats", "-o", "json").stdout)
    assert as_json == json.loads(jq(redis_url, "stats", "--json").stdout)  # the old flag stays
    assert yaml.safe_load(jq(redis_url, "stats", "-o", "yaml").stdout) == as_json
    assert as_json["analytics:aggregate"]["queued"] == 12345
    bad = jq(redis_url, "stats", "-o", "xml")
    assert bad.returncode == ExitCode.USAGE
    assert "'xml' is not one of 'table', 'wide', 'json', 'yaml'" in bad.stderr


def test_status_reads_in_a_pipe_and_as_yaml(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "ops")
    enqueue("ops", FN + "add", ["x" * 200], job_id="long", connection=redis_conn)
    text = jq(redis_url, "status", "ops", "long").stdout
    args_line = next(line for line in text.splitlines() if line.startswith("args:"))
    assert args_line.endswith("…")  # long values are cut in the table ...
    wide = jq(redis_url, "status", "ops", "long", "-o", "wide").stdout
    assert "x" * 200 in wide  # ... and whole in wide
    data = yaml.safe_load(jq(redis_url, "status", "ops", "long", "-o", "yaml").stdout)
    assert (data["id"], data["status"], data["args"]) == ("long", "queued", [["x" * 200]])


def test_errors_never_print_the_redis_password(redis_url: str) -> None:
    """Regression (issue 20): `_conn` printed the whole URL, and CronJob pods run this command,
    so a Redis outage put the password in pod logs. A password with an unencoded '/' or '@'
    is refused up front (redis-py would take part of it for the host and port, connect there
    and quote it in its errors)."""
    cases = {
        "redis://user:12345/xyz@127.0.0.1:1/0": ExitCode.USAGE,  # ambiguous: refused, says why
        "redis://:pa55word@127.0.0.1:notaport/0": ExitCode.USAGE,
        "redis://:s3cr3t-pw@127.0.0.1:1/0": ExitCode.REDIS,  # unreachable
        "redis://jq:s3cr3t-pw@127.0.0.1:1/0?socket_timeout=1": ExitCode.REDIS,
        "redis://127.0.0.1:1/0?password=s3cr3t-pw": ExitCode.REDIS,
    }
    env = worker_env(redis_url, "cli")
    for url, code in cases.items():
        for args in (["stats"], ["enqueue", "q", FN + "add"], ["worker", "-q", "q", "--import", JOBS]):
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "jobqueue.cli", "--redis-url", url, *args],
                    capture_output=True,
                    text=True,
                    timeout=8,
                    check=False,
                    env=env,
                )
                output, returncode = result.stdout + result.stderr, result.returncode
            except subprocess.TimeoutExpired as running:  # a worker waits for its Redis, logging
                output = (running.stdout or b"").decode() + (running.stderr or b"").decode()
                returncode = None
            if args[0] == "worker" and code == ExitCode.REDIS:
                assert returncode is None, output
                assert "Redis unavailable" in output, output
            else:
                assert returncode == code, (url, args, output)
            for secret in ("12345", "xyz", "s3cr3t-pw", "pa55word"):
                if secret in url:
                    assert secret not in output, (url, args, output)
        if code == ExitCode.USAGE:
            assert "percent-encode" in output or "port is not a number" in output, output


def test_sigterm_stops_the_command_as_a_containers_first_process(redis_url: str) -> None:
    """In a pod the command is its container's PID 1, for which the kernel drops any signal it
    has no handler for: a pod deleted while ``jobqueue`` started ignored SIGTERM (a worker then
    claimed jobs and ran them until the SIGKILL). Here it is PID 1 of a PID namespace of its
    own, sent SIGTERM from outside as the runtime does, while it waits for a job."""
    conn = redis.Redis.from_url(redis_url)
    publish(conn, "pid1")
    enqueue("pid1", f"{FN}add", 1, 2, job_id="never-run", connection=conn)
    jobqueue_command = str(Path(sys.executable).with_name("jobqueue"))  # the console script, as in the image
    command = [jobqueue_command, "wait", "pid1", "never-run", "--timeout", "60"]
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", *command],
        env=worker_env(redis_url, "cli"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        first = wait_for("the command started in its namespace", lambda: children.read_text().split(), 10)[0]
        time.sleep(1.0)  # well into its wait
        os.kill(int(first), signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
