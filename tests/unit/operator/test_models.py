"""The JobQueue model's derived values, the index projection and the published settings."""

from __future__ import annotations

from typing import Any

import pytest

from jobqueue.settings import JobOptions
from jobqueue_operator import index, models
from jobqueue_operator.builders import published

WORKER = {"image": "img:1", "imports": ["app.jobs"]}


def body(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"namespace": "glec", "name": "ei-update", "uid": "u1", "generation": 7, **meta},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("concurrency", "per_pod", "max_replicas", "expected"),
    [(20, 4, None, 5), (21, 4, None, 6), (3, 1, None, 3), (1, 1, None, 1), (20, 4, 2, 2)],
)
def test_max_replicas_defaults_to_the_pods_concurrency_needs(
    concurrency: int, per_pod: int, max_replicas: int | None, expected: int
) -> None:
    spec = models.JobQueueSpec.model_validate(
        {
            "concurrency": concurrency,
            "worker": {**WORKER, "concurrencyPerPod": per_pod},
            "scaling": {} if max_replicas is None else {"maxReplicas": max_replicas},
        }
    )
    assert spec.effective_max_replicas == expected


def test_queue_name_defaults_to_namespace_dot_name() -> None:
    spec = models.JobQueueSpec.model_validate({"worker": WORKER})
    assert spec.effective_queue_name("glec", "reports") == "glec.reports"
    named = models.JobQueueSpec.model_validate({"worker": WORKER, "queueName": "ei:update"})
    assert named.effective_queue_name("glec", "reports") == "ei:update"


def test_unknown_fields_are_ignored_so_an_older_operator_reads_newer_objects() -> None:
    spec = models.JobQueueSpec.model_validate({"worker": {**WORKER, "futureField": 1}, "futureTop": {}})
    assert spec.worker.image == "img:1"


def test_recurring_job_spec_reads_kwargs_under_their_api_name() -> None:
    spec = models.RecurringJobSpec.model_validate(
        {
            "schedule": "0 0 * * *",
            "queue": "analytics",
            "function": "glec.jobs.daily_aggregate",
            "kwargs": {"aggregation_type": "daily"},
            "jobOptions": {"attempts": 2},
        }
    )
    assert spec.keyword_args == {"aggregation_type": "daily"}
    assert spec.job_options == JobOptions(attempts=2)
    assert (spec.time_zone, spec.concurrency_policy, spec.suspend) == ("UTC", "Forbid", False)


def test_cel_literals_escape_backslashes_and_quotes() -> None:
    assert models.lit(r"^a\.b'c$") == r"'^a\\.b\'c$'"


def test_index_entry_has_every_default_applied() -> None:
    ref = index.queue_ref(
        body(
            {
                "queueName": "ei:update",
                "priority": 1,
                "concurrency": 20,
                "worker": {**WORKER, "concurrencyPerPod": 4},
                "redis": {"urlSecretRef": {"name": "r", "key": "url"}},
            }
        )
    )
    assert ref is not None
    assert ref.key == ("glec", "ei-update")
    assert (ref.queue_name, ref.priority, ref.concurrency, ref.concurrency_per_pod) == ("ei:update", 1, 20, 4)
    assert (
        ref.min_replicas,
        ref.max_replicas,
        ref.scale_down_delay_seconds,
        ref.idle_seconds_before_zero,
    ) == (0, 5, 60, 300)
    assert (ref.deployment_name, ref.generation, ref.uid) == ("ei-update-worker", 7, "u1")
    assert ref.redis_secret == ("r", "url")
    assert ref.redis_spec == models.RedisSpec(url_secret_ref=models.SecretKeyRef(name="r", key="url"))
    assert not ref.deleting


def test_index_entry_records_deletion() -> None:
    raw = body({"worker": WORKER}, deletionTimestamp="2026-01-01T00:00:00Z")
    ref = index.queue_ref(raw)
    assert ref is not None
    assert ref.deleting
    assert ref.redis_spec is None


def test_an_unreadable_spec_is_not_indexed() -> None:
    assert index.queue_ref(body({"worker": {"image": "x"}})) is None


def test_whether_a_jobqueue_still_declares_a_queue_has_one_policy() -> None:
    """The owner check of a queue name and the settings sweep ask the same question; an
    unreadable spec counts as yes (nothing is given away on a guess), a deletion as no."""
    raw = body({"worker": WORKER, "queueName": "ei:update"})
    assert index.declares(raw, "ei:update")
    assert not index.declares(raw, "ei:other")
    assert not index.declares(None, "ei:update")
    assert not index.declares(
        body({"worker": WORKER, "queueName": "ei:update"}, deletionTimestamp="2026-01-01T00:00:00Z"),
        "ei:update",
    )
    assert index.declares(body({"worker": {"image": "x"}}), "ei:update")


def test_index_entries_are_reused_until_the_spec_or_the_deletion_changes() -> None:
    refs = index.QueueRefs()
    first = refs.of(body({"worker": WORKER, "priority": 2}))
    # a status write: same generation, new status; the spec is not read again
    again = refs.of({**body({"worker": WORKER, "priority": 2}), "status": {"queued": 4}})
    assert first is not None
    assert again is first
    changed = refs.of(body({"worker": WORKER, "priority": 1}, generation=8))
    assert changed is not None
    assert changed is not first
    assert changed.priority == 1
    deleting = refs.of(
        body({"worker": WORKER, "priority": 1}, generation=8, deletionTimestamp="2026-01-01T00:00:00Z")
    )
    assert deleting is not None
    assert deleting.deleting
    refs.forget("u1")
    assert refs.of(body({"worker": WORKER, "priority": 1}, generation=8)) is not changed


def test_published_settings_carry_the_owner_and_the_generation() -> None:
    spec = models.JobQueueSpec.model_validate(
        {
            "priority": 2,
            "concurrency": 8,
            "suspend": True,
            "worker": {**WORKER, "imports": ["a", "b"]},
            "jobDefaults": {"attempts": 3, "timeoutSeconds": 30},
        }
    )
    settings = published.queue_settings(namespace="glec", name="reports", generation=4, spec=spec)
    assert settings.queue_name == "glec.reports"
    assert (settings.namespace, settings.jobqueue, settings.generation) == ("glec", "reports", 4)
    assert (settings.priority, settings.concurrency, settings.suspend, settings.imports) == (
        2,
        8,
        True,
        ("a", "b"),
    )
    assert settings.effective().attempts == 3
    assert settings.effective().timeout_seconds == 30
    assert published.owner(settings) == ("glec", "reports")
    no_defaults = published.queue_settings(
        namespace="glec", name="r", generation=1, spec=models.JobQueueSpec.model_validate({"worker": WORKER})
    )
    assert no_defaults.job_defaults == JobOptions()
    assert no_defaults.rate_limit is None


def test_rate_limit_reaches_the_published_settings_and_the_autoscaler() -> None:
    body_spec = {
        "worker": WORKER,
        "rateLimit": {"jobs": 30, "perSeconds": 60},
        "keyRateLimit": {"jobs": 2, "perSeconds": 0.5},
    }
    spec = models.JobQueueSpec.model_validate(body_spec)
    settings = published.queue_settings(namespace="glec", name="mail", generation=1, spec=spec)
    assert settings.rate_limit is not None
    assert (settings.rate_limit.jobs, settings.rate_limit.per_seconds) == (30, 60.0)
    assert '"rateLimit":{"jobs":30,"perSeconds":60.0}' in settings.model_dump_json(by_alias=True)
    assert '"keyRateLimit":{"jobs":2,"perSeconds":0.5}' in settings.model_dump_json(by_alias=True)
    ref = index.queue_ref(body(body_spec, generation=1))
    assert ref is not None
    assert ref.rate_limit_jobs == 30
