"""Random job records in real Redis, real workers in every mode: the worker lives on.

Hypothesis writes batches of raw records — ids of any bytes, payloads of any shape (deep,
lone surrogates, not JSON, not zlib), hash fields missing, extra, of the wrong type or
garbage, keys that are not hashes — into a queue that a real ``jobqueue worker`` serves,
with two ordinary jobs in every batch. For every batch:

* the worker is still running and never logged a traceback;
* the ordinary jobs finished, each with one attempt (nothing charged to them);
* every record ended: finished, or failed for good with a readable reason (valid UTF-8,
  never a ``b'...'`` repr), or dropped from the queue (no record, a record of another
  status, a key that is not a hash); nothing stays queued, scheduled or claimed;
* ``get_job`` and ``jobqueue status`` (table and ``--json``) show every record.

Example counts are modest and deadlines are off: each example is a real round through Redis
and a worker on a shared, noisy machine (several hundred milliseconds).
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from integration.workers.whelpers import FN, WorkerProcess, publish, wait_for, worker_process
from jobqueue import JobSpec, UnknownJobError, enqueue_many, get_job
from jobqueue.cli import main as cli

QUEUE = "prop"
EXAMPLES = {"thread": 25, "process": 10, "async": 10}
STATUSES = ["queued", "started", "finished", "failed", "scheduled", "deferred", "canceled", "stopped"]

# --- strategies

#: text with anything in it, lone surrogates included
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(ANY_TEXT, kids, max_size=3),
    max_leaves=8,
)
FUNCTIONS = st.sampled_from(
    [FN + "noop", FN + "add", FN + "always_fail", FN + "unprintable", FN + "not_a_job", "os.system", "",
     "x" * 300]
) | ANY_TEXT  # fmt: skip
#: numbers a field may hold, and garbage: never a large whole number (a record asking for
#: 5,000 attempts of a failing function is legal, and only slow)
GARBAGE = st.sampled_from(
    ["", "abc", "nan", "inf", "-inf", "1e999", "0x10", " 5 ", "-5", "2.5", "1e400", "\u00b2", "[]", "{}"]
) | st.binary(max_size=6).filter(lambda b: not b.strip().isdigit())


def number(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.integers(int(lo), int(hi)) | st.floats(lo, hi) | GARBAGE


def dumps(value: Any) -> str:
    return json.dumps(value)  # (ensure_ascii: lone surrogates become \ud800 escapes, as producers write)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["call", "call", "call", "deep", "shape", "bytes", "pickle"]))
    if kind == "call":
        args = dumps(draw(st.lists(JSON, max_size=3)))
        kwargs = dumps(draw(st.dictionaries(ANY_TEXT, JSON, max_size=2)))
        text = f"[{dumps(draw(FUNCTIONS))},null,{args},{kwargs}]"
    elif kind == "deep":
        depth = draw(st.integers(1, 20_000))
        text = f'["{FN}add",null,[{"[" * depth}{"]" * depth}],{{}}]'
    elif kind == "shape":
        text = dumps(draw(JSON))
    elif kind == "pickle":
        return b"\x80\x04" + draw(st.binary(max_size=20))
    else:
        return draw(st.binary(max_size=40))
    raw = text.encode()
    return zlib.compress(raw) if draw(st.booleans()) else raw


#: hash fields a record may carry (each one optional), with what they may hold
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from(STATUSES) | GARBAGE,
    "origin": st.just(QUEUE) | GARBAGE,
    "timeout": number(-2, 30),
    "jq_attempts": number(0, 4),
    "jq_made": number(0, 4),
    "retries_left": number(0, 3),
    "result_ttl": number(-1, 3600),
    "failure_ttl": number(-1, 3600),
    "jq_prio": number(0, 6),
    "jq_ready": number(0, 2e9),
    "enqueued_at": st.just("2026-01-31T12:00:00.123456Z") | GARBAGE,
    "jq_backoff": st.just('{"type":"fixed","delaySeconds":0.05}') | GARBAGE,
    "retry_intervals": st.just("[0, 0.1]") | GARBAGE,
    "meta": st.just("{}") | GARBAGE,
    "success_callback_name": st.just("") | GARBAGE,
    "webhooks": GARBAGE,
    "repeats_left": st.just("0") | GARBAGE,
}


@dataclass
class Record:
    id: bytes
    kind: str  # hash | string | list | absent
    where: str  # a pending list (level 1..5) or 'scheduled' (already due)
    fields: dict[str, Any] = field(default_factory=dict)


@st.composite
def records(draw: st.DrawFn) -> Record:
    job_id = draw(st.from_regex(r"\A[A-Za-z0-9_-]{1,12}\Z").map(str.encode) | st.binary(max_size=16))
    kind = draw(st.sampled_from(["hash"] * 8 + ["string", "list", "absent"]))
    where = draw(st.sampled_from(["p1", "p2", "p3", "p3", "p3", "p4", "p5", "scheduled"]))
    fields: dict[str, Any] = {"status": "queued", "data": draw(payloads())}
    for name, strategy in FIELDS.items():
        if draw(st.integers(0, 3)) == 0:
            fields[name] = draw(strategy)
    if draw(st.booleans()):
        fields.pop("data")
    extra = draw(st.dictionaries(st.binary(min_size=1, max_size=6), st.binary(max_size=6), max_size=2))
    return Record(job_id, kind, where, {**extra, **fields})


# --- running and checking a batch

_batches = itertools.count()


def _write(conn: redis.Redis, token: bytes, recs: list[Record]) -> list[bytes]:
    ids = []
    for i, r in enumerate(recs):
        job_id = token + str(i).encode() + r.id  # unique per example, still any bytes
        ids.append(job_id)
        key = b"rq:job:" + job_id
        if r.kind == "hash":
            conn.hset(key, mapping=r.fields)
        elif r.kind == "string":
            conn.set(key, b"not a hash")
        elif r.kind == "list":
            conn.rpush(key, b"x")
        if r.where == "scheduled":
            conn.zadd(f"rq:scheduled:{QUEUE}", {job_id: 1.0})
        else:
            level = int(r.where[1])
            conn.rpush(f"rq:queue:{QUEUE}" + ("" if level == 3 else f":p{level}"), job_id)
    return ids


def _settled(conn: redis.Redis) -> bool:
    pending = [f"rq:queue:{QUEUE}" + ("" if lvl == 3 else f":p{lvl}") for lvl in range(1, 6)]
    return (
        not any(conn.llen(k) for k in pending)
        and not conn.zcard(f"rq:scheduled:{QUEUE}")
        and not (conn.zcard(f"rq:wip:{QUEUE}"))
    )


def _readable(reason: str) -> bool:
    """Says something, in valid UTF-8, and is no repr of raw bytes (``b'\\xff...'``)."""
    return bool(reason.strip()) and not re.search(r"""\bb['"][^'"]*\\x[0-9a-f]{2}""", reason)


def check_batch(conn: redis.Redis, url: str, worker: WorkerProcess, recs: list[Record]) -> None:
    token = f"b{next(_batches)}-".encode()
    ids = _write(conn, token, recs)
    ordinary = [f"{token.decode()}ok{i}" for i in range(2)]
    specs = [JobSpec(FN + "add", (i, 1), job_id=j) for i, j in enumerate(ordinary)]
    enqueue_many(QUEUE, specs, connection=conn)
    wait_for("the batch to settle", lambda: _settled(conn), timeout=60)

    assert worker.proc.poll() is None, worker.log()
    assert "Traceback" not in worker.log(), worker.log()
    for i, job_id in enumerate(ordinary):
        info = get_job(QUEUE, job_id, connection=conn)
        assert (info.status, info.attempts_made, info.result) == ("finished", 1, i + 1), info
    runner = CliRunner()
    for r, job_id in zip(recs, ids, strict=True):
        if r.kind != "hash" or not conn.exists(b"rq:job:" + job_id):
            continue  # not a job record (dropped from the queue), or deleted by its retention
        status = conn.hget(b"rq:job:" + job_id, "status")
        reason = (conn.hget(b"rq:job:" + job_id, "jq_reason") or b"").decode()
        original = r.fields.get("status")
        if original in STATUSES and original != "queued" and status == original.encode():
            pass  # a stale entry of a job in another state: dropped from the queue, never run twice
        elif status == b"failed":
            assert _readable(reason), (r, reason)
        else:
            assert status == b"finished", (r, status)
        name = job_id.decode("utf-8", "surrogateescape")
        origin = conn.hget(b"rq:job:" + job_id, "origin")
        if origin not in (None, b"", QUEUE.encode()):  # its origin field names another queue
            with pytest.raises(UnknownJobError, match="belongs to queue"):
                get_job(QUEUE, name, connection=conn)
            continue
        get_job(QUEUE, name, connection=conn)
        for extra in ((), ("--json",)):
            out = runner.invoke(cli, ["--redis-url", url, "status", QUEUE, name, *extra])
            assert out.exception is None, (r, out.output, out.exception)
            assert out.exit_code == 0, (r, out.output)


@pytest.mark.parametrize("mode", ["thread", "process", "async"])
def test_random_records_never_hurt_the_worker_or_other_jobs(
    redis_conn: redis.Redis, redis_url: str, mode: str
) -> None:
    publish(redis_conn, QUEUE, attempts=2, backoff={"type": "fixed", "delaySeconds": 0}, timeoutSeconds=30)
    with worker_process(redis_url, QUEUE, mode=mode, concurrency=2) as worker:

        @hsettings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(batch=st.lists(records(), min_size=1, max_size=6))
        def check(batch: list[Record]) -> None:
            check_batch(redis_conn, redis_url, worker, batch)
            ran.append(len(batch))

        ran: list[int] = []
        check()
        assert len(ran) >= EXAMPLES[mode]
