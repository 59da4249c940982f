"""Job options and job validation at enqueue time (pure: no Redis is touched)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from jobqueue import InvalidJobError, JobSpec, settings
from jobqueue.client import _Builder, _options


def _fields(builder: _Builder, argv: list[Any]) -> dict[str, Any]:
    """The hash fields the ENQUEUE script writes from one job's arguments (see _lua.ENQUEUE)."""
    _, kind, level, ready, option_set, data, description, *_dependencies = argv
    shared = builder.sets[option_set - 1]
    fields = dict(zip(shared[::2], shared[1::2], strict=True))
    fields.update(
        origin=builder.queue,
        jq_prio=level,
        jq_ready=ready,
        data=data,
        description=description,
        status="scheduled" if kind == "s" else "queued",
    )
    return fields


@pytest.fixture
def builder() -> _Builder:
    qs = settings.QueueSettings.model_validate(
        {
            "queueName": "ei:update",
            "jobDefaults": {
                "attempts": 3,
                "backoff": {"type": "exponential", "delaySeconds": 1},
                "timeoutSeconds": 30,
                "keepCompleted": {"ageSeconds": 3600},
            },
        }
    )
    return _Builder(qs)


def test_queue_defaults_are_applied(builder: _Builder) -> None:
    job_id, kind, argv = builder.build(JobSpec("glec.jobs.update", ["f-1", 93.5]))
    f = _fields(builder, argv)
    assert kind == "q"
    assert argv[0] == job_id
    assert len(job_id) == 32
    assert f["jq_attempts"] == 3
    assert f["retries_left"] == 2
    assert f["timeout"] == 30
    assert f["result_ttl"] == 3600
    assert f["failure_ttl"] == settings.DEFAULT_KEEP_FAILED_SECONDS
    assert json.loads(f["jq_backoff"]) == {"type": "exponential", "delaySeconds": 1.0, "jitter": 0.0}
    assert json.loads(f["retry_intervals"]) == [1, 2]  # what RQ would wait if *it* retried
    assert f["status"] == "queued"
    assert f["origin"] == "ei:update"
    assert f["jq_prio"] == 3


def test_per_job_overrides_win_field_by_field(builder: _Builder) -> None:
    _, _, argv = builder.build(
        JobSpec(
            "glec.jobs.update",
            options={
                "attempts": 5,
                "backoff": 2,
                "timeout": 10,
                "keep_completed": 0,
                "keepFailed": {"ageSeconds": 60},
            },
        )
    )
    f = _fields(builder, argv)
    assert f["jq_attempts"] == 5
    assert f["timeout"] == 10
    assert f["result_ttl"] == 0
    assert f["failure_ttl"] == 60
    assert json.loads(f["jq_backoff"])["type"] == "fixed"
    assert json.loads(f["retry_intervals"]) == [2, 2, 2, 2]


def test_delay_and_priority(builder: _Builder) -> None:
    _, kind, argv = builder.build(JobSpec("a.b", delay=timedelta(seconds=2.5), priority=1))
    f = _fields(builder, argv)
    assert kind == "s"
    assert f["status"] == "scheduled"
    assert float(argv[3]) == pytest.approx(builder.now + 2.5)
    assert argv[2] == 1
    assert f["jq_prio"] == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (JobSpec("a.b", job_id="has:colon"), "job id"),
        (JobSpec("a.b", job_id=""), "job id"),
        (JobSpec("a.b", priority=0), "priority"),
        (JobSpec("a.b", priority=6), "priority"),
        (JobSpec("a.b", priority=True), "priority"),
        (JobSpec("a.b", delay=-1), "delay"),
        (JobSpec("a.b", args=[object()]), "must be JSON values"),
        (JobSpec("a.b", kwargs={1: 2}), "must be JSON values|must be strings"),
        (JobSpec("nodots"), "dotted name"),
        (JobSpec("a.b", options={"attempts": 0}), "attempts"),
        (JobSpec("a.b", options={"retries": 3}), "retries"),
        (JobSpec("a.b", options={"backoff": {"type": "linear"}}), "backoff.type"),
    ],
)
def test_invalid_jobs_are_refused_with_the_reason(builder: _Builder, spec: JobSpec, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        builder.build(spec)


def test_undecorated_function_object_is_refused(builder: _Builder) -> None:
    def plain() -> None: ...

    with pytest.raises(Exception, match=r"@jobqueue\.job"):
        builder.build(JobSpec(plain))


def test_options_accept_python_and_crd_spellings() -> None:
    a = _options({"timeout_seconds": 5, "keep_completed": {"age_seconds": 7}})
    b = _options({"timeoutSeconds": 5, "keepCompleted": {"ageSeconds": 7}})
    assert a == b
    assert _options(None) is None


def test_backoff_delays_follow_bullmq() -> None:
    exp = settings.Backoff(type="exponential", delaySeconds=0.5, maxDelaySeconds=3)
    assert [exp.delay_for_retry(i) for i in range(1, 6)] == [0.5, 1, 2, 3, 3]
    jittered = settings.Backoff(delaySeconds=4, jitter=0.5)
    assert jittered.delay_for_retry(1, rand=0.0) == 2.0
    assert jittered.delay_for_retry(1, rand=1.0) == 4.0


def test_text_decoding_clients_are_refused() -> None:
    import redis

    from jobqueue import enqueue

    client = redis.Redis(decode_responses=True)  # never connects: refused before any command
    with pytest.raises(ValueError, match="without decode_responses"):
        enqueue("q", "a.b", connection=client)
