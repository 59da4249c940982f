"""Poison: whatever sits in Redis and whatever a job function does, the worker lives on.

One named regression test per finding of issue 20, each against real Redis and the real
``jobqueue worker`` command in every mode where the mode matters: the poison job ends
``failed`` for good with a readable reason, the innocent jobs claimed next to it finish with
one attempt, and the worker is still running without a traceback. Random records are in
``test_worker_poison_properties.py``; what readers (``get_job``, the CLI) show of such
records is at the end of this file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import zlib
from typing import Any

import pytest
import redis

from integration.workers.whelpers import (
    FN,
    WorkerProcess,
    jq,
    publish,
    wait_for,
    wait_status,
    worker_process,
)
from jobqueue import JobSpec, UnknownJobError, admin, enqueue_many, get_job

MODES = ["process", "thread", "async"]


def raw_job(conn: redis.Redis, queue: str, job_id: bytes, data: bytes | None, **fields: Any) -> None:
    """A job record written straight into Redis (a plain RQ producer, a script, an attacker)."""
    mapping: dict[str, Any] = {"status": "queued", "origin": queue, **fields}
    if data is not None:
        mapping["data"] = data
    conn.hset(b"rq:job:" + job_id, mapping=mapping)
    conn.rpush(f"rq:queue:{queue}", job_id)


def call(function: str, args_json: str = "[]", kwargs_json: str = "{}") -> bytes:
    """RQ's JSON payload, from JSON text (so it can hold what json.dumps never writes)."""
    return zlib.compress(f"[{json.dumps(function)},null,{args_json},{kwargs_json}]".encode())


def innocents(conn: redis.Redis, queue: str, tag: str, n: int = 3) -> list[str]:
    ids = [f"{tag}-{i}" for i in range(n)]
    enqueue_many(queue, [JobSpec(FN + "add", (i, 1), job_id=j) for i, j in enumerate(ids)], connection=conn)
    return ids


def ran_once(conn: redis.Redis, queue: str, ids: list[str]) -> None:
    """The innocent jobs finished, none charged an extra attempt."""
    for job_id in ids:
        done = wait_status(conn, queue, job_id, "finished", timeout=30)
        assert done.attempts_made == 1, (job_id, done)


def alive(w: WorkerProcess) -> None:
    """The worker still runs, and never logged a traceback."""
    assert w.proc.poll() is None, f"the worker exited ({w.proc.returncode}):\n{w.log()}"
    assert "Traceback" not in w.log(), w.log()


def poison_among_innocents(
    conn: redis.Redis, url: str, mode: str, *, poison: bytes, data: bytes, reason: str, attempts: int = 3
) -> None:
    """A poison record written between innocent jobs (claimed in the same batches) fails for
    good with `reason`; the innocent ones run once; the worker lives on."""
    publish(conn, "pz", attempts=attempts)
    before = innocents(conn, "pz", "before")
    raw_job(conn, "pz", poison, data)
    after = innocents(conn, "pz", "after")
    with worker_process(url, "pz", mode=mode, concurrency=2) as w:
        info = wait_status(conn, "pz", poison.decode("utf-8", "surrogateescape"), "failed", timeout=30)
        assert info.failed_reason == reason
        assert info.attempts_made <= 1  # never retried: retrying cannot help
        ran_once(conn, "pz", before + after)
        assert conn.zcard("rq:wip:pz") == 0
        alive(w)


INVALID_ID = "is not valid: RQ allows 1-1024 characters of A-Z a-z 0-9 _ -"


@pytest.mark.parametrize("mode", MODES)
def test_a_job_id_with_a_pipe_fails_alone(redis_conn: redis.Redis, redis_url: str, mode: str) -> None:
    reason = f'rejected: job id "a|b" {INVALID_ID}'
    poison_among_innocents(redis_conn, redis_url, mode, poison=b"a|b", data=call(FN + "add"), reason=reason)


@pytest.mark.parametrize("mode", MODES)
def test_a_job_id_that_is_not_utf8_fails_alone(redis_conn: redis.Redis, redis_url: str, mode: str) -> None:
    reason = f'rejected: job id "bad\\xff\\xfeid" {INVALID_ID}'
    poison = b"bad\xff\xfeid"
    poison_among_innocents(redis_conn, redis_url, mode, poison=poison, data=call(FN + "add"), reason=reason)


@pytest.mark.parametrize("mode", MODES)
def test_a_lone_surrogate_keyword_fails_with_a_readable_reason(
    redis_conn: redis.Redis, redis_url: str, mode: str
) -> None:
    # the function is called and refuses the keyword: an ordinary failure of the job (its one
    # attempt here), whose reason holds the surrogate as text
    data = call(FN + "add", "[1, 2]", '{"\\ud800": 1}')
    reason = "TypeError: add() got an unexpected keyword argument '\\ud800'"
    poison_among_innocents(
        redis_conn, redis_url, mode, poison=b"surrogate", data=data, reason=reason, attempts=1
    )


@pytest.mark.parametrize("mode", MODES)
def test_an_argument_nested_20000_deep_is_rejected(
    redis_conn: redis.Redis, redis_url: str, mode: str
) -> None:
    data = call(FN + "add", "[" + "[" * 20000 + "]" * 20000 + ", 1]")
    reason = "rejected: payload nests arrays/objects deeper than the JSON decoder allows (about 1,000 levels)"
    poison_among_innocents(redis_conn, redis_url, mode, poison=b"deep", data=data, reason=reason)


@pytest.mark.parametrize(("mode", "function"), [
    ("process", "unprintable"), ("thread", "unprintable"),
    ("async", "aunprintable"), ("async", "unprintable"),
])  # fmt: skip
def test_an_exception_whose_str_raises_fails_its_job_at_once(
    redis_conn: redis.Redis, redis_url: str, mode: str, function: str
) -> None:
    publish(redis_conn, "px", attempts=1, timeoutSeconds=60)
    enqueue_many("px", [JobSpec(FN + function, job_id="bad"), JobSpec(FN + "add", (2, 2), job_id="next")],
                 connection=redis_conn)  # fmt: skip
    with worker_process(redis_url, "px", mode=mode, concurrency=1) as w:
        info = wait_status(redis_conn, "px", "bad", "failed", timeout=30)
        # reported at once (before: the slot was stuck until the 60 s timeout, or the process
        # died), as its type with a note instead of the message
        assert info.failed_reason == "Unprintable: <its message could not be read: str() raised ValueError>"
        assert info.started_at
        assert info.finished_at
        assert (info.finished_at - info.started_at).total_seconds() < 10
        assert "Unprintable" in (info.stacktrace or "")
        # the one slot is free again
        assert wait_status(redis_conn, "px", "next", "finished", timeout=30).result == 4
        alive(w)


@pytest.mark.parametrize("mode", MODES)
def test_base_exceptions_from_job_code_fail_only_their_job(
    redis_conn: redis.Redis, redis_url: str, mode: str
) -> None:
    publish(redis_conn, "pb", attempts=1)
    fn = FN + ("araise_base" if mode == "async" else "raise_base")
    kinds = ["SystemExit", "KeyboardInterrupt", "GeneratorExit"]
    enqueue_many("pb", [JobSpec(fn, (k,), job_id=k) for k in kinds], connection=redis_conn)
    ids = innocents(redis_conn, "pb", "ok")
    with worker_process(redis_url, "pb", mode=mode, concurrency=2) as w:
        for kind in kinds:
            info = wait_status(redis_conn, "pb", kind, "failed", timeout=30)
            assert info.failed_reason == f"{kind}: from a job"
        ran_once(redis_conn, "pb", ids)
        alive(w)


def test_an_async_job_that_swallows_its_cancellation_fails_for_good(
    redis_conn: redis.Redis, redis_url: str
) -> None:
    publish(redis_conn, "ps", attempts=3, timeoutSeconds=1, backoff={"type": "fixed", "delaySeconds": 0})
    enqueue_many("ps", [JobSpec(FN + "swallow_cancel", (8,), job_id="stubborn"),
                        JobSpec(FN + "add", (1, 1), job_id="next")], connection=redis_conn)  # fmt: skip
    with worker_process(redis_url, "ps", mode="async", concurrency=1) as w:
        info = wait_status(redis_conn, "ps", "stubborn", "failed", timeout=30)
        assert info.failed_reason == (
            "JobTimeoutError: the attempt exceeded its timeout of 1 s; it was cancelled, but it caught the "
            "CancelledError and still runs 2 s later (left to run in the background); not retried"
        )
        assert info.attempts_made == 1  # a retry would start a second copy next to the first
        # its slot is given to the next job while it still runs in the background
        assert wait_status(redis_conn, "ps", "next", "finished", timeout=30).result == 2
        assert redis_conn.llen("test:swallowed") == 0
        wait_for("the swallowing job to end on its own", lambda: redis_conn.llen("test:swallowed") == 1)
        # its late result is not recorded
        assert get_job("ps", "stubborn", connection=redis_conn).status == "failed"
        alive(w)


def test_an_async_job_that_cancels_itself_fails_at_once(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "pc", attempts=1, timeoutSeconds=60)
    enqueue_many("pc", [JobSpec(FN + "cancel_self", job_id="quitter")], connection=redis_conn)
    with worker_process(redis_url, "pc", mode="async", concurrency=1) as w:
        info = wait_status(redis_conn, "pc", "quitter", "failed", timeout=30)
        assert info.failed_reason == (
            "CancelledError: raised in the job's own code (the worker did not cancel it)"
        )
        assert info.started_at
        assert info.finished_at
        assert (info.finished_at - info.started_at).total_seconds() < 10  # not at its timeout
        alive(w)


@pytest.mark.parametrize(("function", "how"), [("crash", "exit code 3"), ("segfault", "killed by signal 11")])
def test_a_job_that_kills_its_process_fails_for_good(
    redis_conn: redis.Redis, redis_url: str, function: str, how: str
) -> None:
    publish(redis_conn, "pk", attempts=3, backoff={"type": "fixed", "delaySeconds": 0})
    enqueue_many("pk", [JobSpec(FN + function, job_id="killer")], connection=redis_conn)
    ids = innocents(redis_conn, "pk", "ok")
    with worker_process(redis_url, "pk", mode="process", concurrency=2) as w:
        info = wait_status(redis_conn, "pk", "killer", "failed", timeout=30)
        assert info.failed_reason == (
            f"WorkerProcessDied: the process running this job died ({how}); not retried"
        )
        assert info.attempts_made == 1
        ran_once(redis_conn, "pk", ids)
        alive(w)


def test_a_job_process_killed_from_outside_is_retried(redis_conn: redis.Redis, redis_url: str) -> None:
    """SIGKILL comes from outside (the OOM killer, a person): another attempt may well succeed."""
    publish(redis_conn, "po", attempts=2, backoff={"type": "fixed", "delaySeconds": 0})
    enqueue_many("po", [JobSpec(FN + "sigkilled_once", ("o",), job_id="oom")], connection=redis_conn)
    with worker_process(redis_url, "po", mode="process", concurrency=1) as w:
        info = wait_status(redis_conn, "po", "oom", "finished", timeout=30)
        assert (info.attempts_made, info.result) == (2, "ok")
        alive(w)


def test_malformed_hash_fields_fail_the_job_naming_the_field(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "pf", attempts=1)
    ok = call(FN + "add", "[1, 2]")
    cases: dict[bytes, tuple[dict[str, Any], str]] = {
        b"no-status": ({"status": "weird"}, 'field status is "weird", not "queued"'),
        b"nan-timeout": ({"timeout": "nan"},
                         'field timeout is "nan", not a number of seconds > 0 (or -1: no limit)'),
        b"big-attempts": ({"jq_attempts": "1e999"},
                          'field jq_attempts is "1e999", not a whole number 1..10000'),
        b"bad-made": ({"jq_made": "\xff"}, 'field jq_made is "\\xc3\\xbf", not a whole number >= 0'),
        b"bad-ttl": ({"result_ttl": "soon"}, 'field result_ttl is "soon", not a number of seconds'),
        b"no-data": ({"data": ""}, 'field data is "", not a payload (the function call to run)'),
        b"bad-backoff": ({"jq_backoff": '{"type": "zigzag"}'}, "field jq_backoff is "),
        b"callback": ({"success_callback_name": "app.notify"},
                      "uses RQ's on_success callback (success_callback_name \"app.notify\"), which jobqueue "
                      "workers do not carry out"),
        b"repeat": ({"repeats_left": "3"},
                    "uses RQ's Repeat (repeats_left \"3\"), which jobqueue workers do not carry out"),
    }  # fmt: skip
    for job_id, (fields, _) in cases.items():
        own = dict(fields)
        raw_job(redis_conn, "pf", job_id, own.pop("data", ok), **own)
    redis_conn.set("rq:job:not-a-hash", "a string")
    redis_conn.rpush("rq:queue:pf", "not-a-hash")
    ids = innocents(redis_conn, "pf", "ok")
    with worker_process(redis_url, "pf", mode="thread", concurrency=2) as w:
        for job_id, (_, reason) in cases.items():
            info = wait_status(redis_conn, "pf", job_id.decode(), "failed", timeout=30)
            assert (info.failed_reason or "").startswith("rejected: " + reason), (job_id, info.failed_reason)
        ran_once(redis_conn, "pf", ids)
        wait_for("the bad key to be dropped from the queue", lambda: "not-a-hash" in w.log())
        assert "dropped from the queue: rq:job:not-a-hash is not a job hash" in w.log()
        assert redis_conn.get("rq:job:not-a-hash") == b"a string"  # not ours to change
        assert redis_conn.llen("rq:queue:pf") == 0
        alive(w)


def test_rq_job_timeout_minus_one_means_no_limit(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "pt", attempts=1, timeoutSeconds=1)
    raw_job(redis_conn, "pt", b"unbounded", call(FN + "sleep", "[2]"), timeout="-1")
    with worker_process(redis_url, "pt", mode="thread", concurrency=1) as w:
        assert wait_status(redis_conn, "pt", "unbounded", "finished", timeout=30).result == 2
        alive(w)


# --------------------------------------------------------------------------------------
# readers: get_job and every command of the CLI show such records


def jqb(redis_url: str, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return jq(redis_url, *args, text=False)


def test_readers_show_poison_records(redis_conn: redis.Redis, redis_url: str) -> None:
    publish(redis_conn, "pr", attempts=1)
    markup = call(FN + "add", '["[/bold]", "[red]x"]', '{"[/]": "\\ud800"}')
    garbage = {"jq_made": "abc", "jq_attempts": "\xff", "jq_prio": "9", "jq_start": "1e400", "jq_end": "nan",
               "created_at": "yesterday", "timeout": "\u00b2", "jq_progress": "inf"}  # fmt: skip
    records = {
        b"markup": {"data": markup, "status": "failed", "jq_reason": "[/bold] [red]boom", "exc_info": "[/x]"},
        b"surrogates": {"data": call("\\ud800.fn", "[]", '{"\\udcff": 1}'), "status": "failed"},
        b"bad\xffid": {"data": call(FN + "add"), "status": "fai\xffled"},
        b"garbage": {"data": b"\x80\x04pickle", "status": "finished", **garbage},
        b"deep": {"data": call(FN + "add", "[" * 2000 + "]" * 2000), "status": "queued"},
    }
    for job_id, fields in records.items():
        redis_conn.hset(b"rq:job:" + job_id, mapping={"origin": "pr", **fields})
    redis_conn.xadd(b"rq:results:garbage", {"type": "1", "return_value": "%%%"})
    redis_conn.set("rq:job:str", "not a hash")
    # a worker record (any RQ worker may register) holding separators and markup
    redis_conn.hset(
        "rq:worker:odd", mapping={"state": "busy", "current_job": "x\x1fy\x1e[/z]", "hostname": "p[/]"}
    )
    redis_conn.sadd("rq:workers:pr", "rq:worker:odd", "rq:worker:missing")

    for job_id in records:
        info = get_job("pr", job_id.decode("utf-8", "surrogateescape"), connection=redis_conn)
        json.dumps(info.to_dict(), default=str)  # (what `status --json` prints)
        for args in (("status", "pr", job_id), ("status", "pr", job_id, "--json"),
                     ("status", "pr", job_id, "--trace")):  # fmt: skip
            out = jqb(redis_url, *args)
            assert out.returncode == 0, (args, out.stderr.decode(errors="replace"))
            assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
    with pytest.raises(UnknownJobError, match="not a job record"):
        get_job("pr", "str", connection=redis_conn)
    # the admin API's listing: the non-UTF-8 id is found (shown escaped), the non-hash left out
    redis_conn.zadd("rq:failed:pr", {b"bad\xffid": "+inf", b"markup": "+inf", b"str": "+inf"})
    page = admin.list_jobs("pr", "failed", connection=redis_conn)
    assert sorted(j.id for j in page.jobs) == ["bad\\udcffid", "markup"]
    assert page.total == 3

    shown = jqb(redis_url, "status", "pr", "markup").stdout.decode()
    assert "[/bold] [red]boom" in shown  # printed as text, never read as markup
    assert '"[/bold]"' in shown
    assert "\\ud800" in jqb(redis_url, "status", "pr", "surrogates").stdout.decode()
    as_json = json.loads(jqb(redis_url, "status", "pr", "surrogates", "--json").stdout)
    assert as_json["function"] == "\\ud800.fn"
    garbled = get_job("pr", "garbage", connection=redis_conn)
    assert (garbled.attempts_made, garbled.priority, garbled.started_at) == (0, 3, None)
    assert garbled.timeout_seconds is None
    assert garbled.function.startswith("<undecodable payload: payload is pickled")

    waited = jqb(redis_url, "wait", "pr", "markup", "--timeout", "5")
    assert waited.returncode == 1
    assert "failed: [/bold] [red]boom" in waited.stderr.decode()
    commands: list[tuple[tuple[str | bytes, ...], int]] = [
        (("retry", "pr", "markup"), 0), (("retry", "pr", "str"), 3),
        (("remove", "pr", b"bad\xffid"), 0), (("remove", "pr", "str"), 3),
        (("stats", "pr", "--workers"), 0), (("stats", "--json"), 0), (("stats",), 0),
    ]  # fmt: skip
    for args, code in commands:
        out = jqb(redis_url, *args)
        assert out.returncode == code, (args, out.stdout, out.stderr)
        assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
    assert not redis_conn.exists(b"rq:job:bad\xffid")
    assert "x?y?[/z]" in jqb(redis_url, "stats", "pr", "--workers").stdout.decode()


def test_a_worker_survives_sigterm_with_poison_in_flight(redis_conn: redis.Redis, redis_url: str) -> None:
    """Poison handled, then a graceful stop: exit 0, nothing left claimed."""
    publish(redis_conn, "pg", attempts=1)
    raw_job(redis_conn, "pg", b"x:y", call(FN + "add", "[1]"))
    with worker_process(redis_url, "pg", mode="process", concurrency=1) as w:
        wait_status(redis_conn, "pg", "x:y", "failed", timeout=30)
        w.signal(signal.SIGTERM)
        assert w.wait(20) == 0
    assert redis_conn.zcard("rq:wip:pg") == 0
