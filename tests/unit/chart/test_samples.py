"""manifests/samples: the seed's nine queues and two recurring jobs, with the seed's numbers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from unit.chart import chartkit

SAMPLES = chartkit.ROOT / "manifests" / "samples"
OBJECTS = [o for f in sorted(SAMPLES.glob("*.yaml")) for o in chartkit.load_all(f.read_text())]
QUEUES = {o["metadata"]["name"]: o["spec"] for o in OBJECTS if o["kind"] == "JobQueue"}
RECURRING = {o["metadata"]["name"]: o["spec"] for o in OBJECTS if o["kind"] == "RecurringJob"}

#: The seed's queueConfig (BullMQ milliseconds converted to seconds; removeOnComplete: true → 0):
#: queue name: (priority, concurrency, attempts, backoff delay s or None, timeout s or None,
#: keepCompleted age s)
SEED = {
    "ei:update": (1, 20, 3, 1, None, 3600),
    "proposal:ranking": (2, 10, 2, 0.5, None, 1800),
    "order:status-update": (2, 15, 3, 1, None, 3600),
    "dispatch:optimize": (1, 3, 2, 3, 30, 3600),
    "notification:send": (3, 30, 5, 2, None, 86400),
    "audit:log": (5, 10, 1, None, None, 0),
    "analytics:aggregate": (4, 5, 2, None, None, 86400),
    "email:send": (3, 20, 5, 2, None, 86400),
    "cleanup:old-data": (5, 1, 2, 5, None, 0),
}


def test_every_object_is_ours() -> None:
    assert {o["apiVersion"] for o in OBJECTS} == {"jobqueue.glec.io/v1alpha1"}
    assert all("namespace" not in o["metadata"] for o in OBJECTS)  # applied with -n


def test_the_nine_seed_queues() -> None:
    assert sorted(spec["queueName"] for spec in QUEUES.values()) == sorted(SEED)


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_queue_matches_the_seed(name: str) -> None:
    spec = QUEUES[name]
    priority, concurrency, attempts, delay, timeout, keep = SEED[spec["queueName"]]
    defaults = spec["jobDefaults"]
    assert (spec["priority"], spec["concurrency"], defaults["attempts"]) == (priority, concurrency, attempts)
    if delay is None:
        assert "backoff" not in defaults
    else:
        assert defaults["backoff"] == {"type": "exponential", "delaySeconds": delay}
    assert defaults.get("timeoutSeconds") == timeout
    assert defaults["keepCompleted"] == {"ageSeconds": keep}
    assert spec["worker"]["imports"] == ["glec_jobs"]


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
    assert cleanup["kwargs"] == {"retention_days": {
        "api_logs": 90, "ei_history": 730, "notifications": 180, "completed_jobs": 30}}
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
