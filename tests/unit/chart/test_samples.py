"""manifests/samples: the seed's eleven queues and two recurring jobs, with the seed's numbers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from unit.chart import chartkit

SAMPLES = chartkit.ROOT / "manifests" / "samples"
OBJECTS = [o for f in sorted(SAMPLES.glob("*.yaml")) for o in chartkit.load_all(f.read_text())]
QUEUES = {o["metadata"]["name"]: o["spec"] for o in OBJECTS if o["kind"] == "JobQueue"}
RECURRING = {o["metadata"]["name"]: o["spec"] for o in OBJECTS if o["kind"] == "RecurringJob"}

#: The seed's ``queueConfig`` (seed section 1.1), transcribed as written there: BullMQ units
#: (milliseconds) and BullMQ option names, one entry per ``JobQueues`` constant. Absent keys
#: are absent in the seed too (no backoff, no timeout).
SEED_QUEUE_CONFIG: dict[str, dict[str, Any]] = {
    "ei:update": {
        "priority": 1,
        "concurrency": 20,
        "defaultJobOptions": {
            "attempts": 3,
            "backoff": {"type": "exponential", "delay": 1000},
            "removeOnComplete": {"age": 3600},
        },
    },
    "proposal:ranking": {
        "priority": 2,
        "concurrency": 10,
        "defaultJobOptions": {
            "attempts": 2,
            "backoff": {"type": "exponential", "delay": 500},
            "removeOnComplete": {"age": 1800},
        },
    },
    "order:status-update": {
        "priority": 2,
        "concurrency": 15,
        "defaultJobOptions": {
            "attempts": 3,
            "backoff": {"type": "exponential", "delay": 1000},
            "removeOnComplete": {"age": 3600},
        },
    },
    "notification:send": {
        "priority": 3,
        "concurrency": 30,
        "defaultJobOptions": {
            "attempts": 5,
            "backoff": {"type": "exponential", "delay": 2000},
            "removeOnComplete": {"age": 86400},
        },
    },
    "audit:log": {
        "priority": 5,
        "concurrency": 10,
        "defaultJobOptions": {"attempts": 1, "removeOnComplete": True},
    },
    "analytics:aggregate": {
        "priority": 4,
        "concurrency": 5,
        "defaultJobOptions": {"attempts": 2, "removeOnComplete": {"age": 86400}},
    },
    "data:dtg-sync": {
        "priority": 2,
        "concurrency": 5,
        "defaultJobOptions": {
            "attempts": 3,
            "backoff": {"type": "exponential", "delay": 5000},
            "removeOnComplete": {"age": 7200},
        },
    },
    "dispatch:optimize": {
        "priority": 1,
        "concurrency": 3,
        "defaultJobOptions": {
            "attempts": 2,
            "timeout": 30000,
            "backoff": {"type": "exponential", "delay": 3000},
            "removeOnComplete": {"age": 3600},
        },
    },
    "report:generate": {
        "priority": 4,
        "concurrency": 2,
        "defaultJobOptions": {
            "attempts": 3,
            "timeout": 60000,
            "backoff": {"type": "exponential", "delay": 5000},
            "removeOnComplete": {"age": 86400},
        },
    },
    "email:send": {
        "priority": 3,
        "concurrency": 20,
        "defaultJobOptions": {
            "attempts": 5,
            "backoff": {"type": "exponential", "delay": 2000},
            "removeOnComplete": {"age": 86400},
        },
    },
    "cleanup:old-data": {
        "priority": 5,
        "concurrency": 1,
        "defaultJobOptions": {
            "attempts": 2,
            "backoff": {"type": "exponential", "delay": 5000},
            "removeOnComplete": True,
        },
    },
}


def as_job_queue(seed: dict[str, Any]) -> dict[str, Any]:
    """A seed entry in JobQueue terms: milliseconds → seconds, ``removeOnComplete: true`` →
    ``keepCompleted.ageSeconds: 0`` (removed at once), ``{age: N}`` → ``ageSeconds: N``."""
    options = seed["defaultJobOptions"]
    defaults: dict[str, Any] = {"attempts": options["attempts"]}
    if "backoff" in options:
        backoff = options["backoff"]
        defaults["backoff"] = {"type": backoff["type"], "delaySeconds": backoff["delay"] / 1000}
    if "timeout" in options:
        defaults["timeoutSeconds"] = options["timeout"] / 1000
    remove = options["removeOnComplete"]
    defaults["keepCompleted"] = {"ageSeconds": 0 if remove is True else remove["age"]}
    return {"priority": seed["priority"], "concurrency": seed["concurrency"], "jobDefaults": defaults}


def test_every_object_is_ours() -> None:
    assert {o["apiVersion"] for o in OBJECTS} == {"jobqueue.glec.io/v1alpha1"}
    assert all("namespace" not in o["metadata"] for o in OBJECTS)  # applied with -n


def test_the_eleven_seed_queues() -> None:
    assert len(SEED_QUEUE_CONFIG) == 11
    assert sorted(spec["queueName"] for spec in QUEUES.values()) == sorted(SEED_QUEUE_CONFIG)


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_queue_matches_the_seed(name: str) -> None:
    spec = QUEUES[name]
    want = as_job_queue(SEED_QUEUE_CONFIG[spec["queueName"]])
    assert spec["priority"] == want["priority"]
    assert spec["concurrency"] == want["concurrency"]
    # field by field, and nothing the seed does not set (keepFailed, maxDelay, jitter …)
    assert spec["jobDefaults"] == want["jobDefaults"]
    assert spec["worker"]["imports"] == ["glec_jobs"]


def test_the_table_conversion() -> None:
    """The conversion itself, on the two shapes of removeOnComplete and a timeout."""
    assert as_job_queue(SEED_QUEUE_CONFIG["dispatch:optimize"])["jobDefaults"] == {
        "attempts": 2,
        "timeoutSeconds": 30,
        "backoff": {"type": "exponential", "delaySeconds": 3},
        "keepCompleted": {"ageSeconds": 3600},
    }
    assert as_job_queue(SEED_QUEUE_CONFIG["audit:log"])["jobDefaults"] == {
        "attempts": 1,
        "keepCompleted": {"ageSeconds": 0},
    }


def test_failed_jobs_notify_the_admins_through_the_notification_queue() -> None:
    """The seed's JobErrorHandlerService: every queue's exhausted jobs reach notifyAdmins."""
    by_queue = {spec["queueName"]: spec for spec in QUEUES.values()}
    for queue, spec in by_queue.items():
        if queue == "notification:send":
            assert "failureNotification" not in spec  # it would notify itself
        else:
            assert spec["failureNotification"] == {
                "job": {"queue": "notification", "function": "glec_jobs.notify_admins"}
            }
    assert QUEUES["notification"]["queueName"] == "notification:send"


def test_worker_modes_fit_the_work() -> None:
    modes = {spec["queueName"]: spec["worker"]["mode"] for spec in QUEUES.values()}
    assert modes["dispatch:optimize"] == "process"  # heavy computation
    assert modes["notification:send"] == modes["email:send"] == "async"  # network fan-out
    for spec in QUEUES.values():
        per_pod = spec["worker"]["concurrencyPerPod"]
        assert 1 <= per_pod <= spec["concurrency"]


def test_the_two_recurring_jobs() -> None:
    analytics, cleanup = RECURRING["daily-analytics"], RECURRING["cleanup-old-data"]
    assert (analytics["schedule"], analytics["timeZone"]) == ("0 0 * * *", "UTC")
    assert analytics["function"] == "glec_jobs.daily_aggregate"
    assert analytics["kwargs"] == {"aggregation_type": "daily"}
    assert analytics["jobOptions"] == {"keepCompleted": {"ageSeconds": 7 * 86400}}
    assert (cleanup["schedule"], cleanup["timeZone"]) == ("0 2 * * *", "UTC")
    assert cleanup["function"] == "glec_jobs.cleanup_old_data"
    assert cleanup["kwargs"] == {
        "retention_days": {"api_logs": 90, "ei_history": 730, "notifications": 180, "completed_jobs": 30}
    }
    for spec in RECURRING.values():
        assert spec["queue"] in QUEUES


def unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if isinstance(value, dict) and "properties" in schema:
        out = []
        for key, sub in value.items():
            if key not in schema["properties"]:
                out.append(f"{path}.{key}")
            else:
                out += unknown_fields(sub, schema["properties"][key], f"{path}.{key}")
        return out
    return []


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: o["metadata"]["name"])
def test_samples_use_only_fields_of_the_crds(obj: dict[str, Any]) -> None:
    crd_file = chartkit.ROOT / "crds" / f"{obj['kind'].lower()}s.jobqueue.glec.io.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert unknown_fields(obj["spec"], schema, "spec") == []
    assert set(obj["spec"]) >= set(schema.get("required", []))
