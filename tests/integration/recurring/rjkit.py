"""Helpers of the RecurringJob integration tests (on top of the operator tests' opkit)."""

from __future__ import annotations

import json
from typing import Any

import opkit

import devenv

API_VERSION = "jobqueue.glec.io/v1alpha1"


def recurringjob(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A RecurringJob body; queue, schedule and function default to a valid daily job."""
    spec.setdefault("queue", "analytics")
    spec.setdefault("schedule", "0 0 * * *")
    spec.setdefault("function", "glec_jobs.daily_aggregate")
    return {
        "apiVersion": API_VERSION,
        "kind": "RecurringJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def get(cluster: devenv.Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    return opkit.get(cluster, kind, name, namespace)


def wait_ready(
    cluster: devenv.Cluster,
    name: str,
    namespace: str,
    *,
    status: str,
    reason: str,
    generation: int | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """The RecurringJob once its Ready condition has ``status``/``reason`` (for ``generation``)."""

    def check() -> dict[str, Any] | None:
        body = get(cluster, "recurringjob", name, namespace)
        cond = opkit.condition(body, "Ready")
        if (cond.get("status"), cond.get("reason")) != (status, reason):
            return None
        if generation is not None and cond.get("observedGeneration") != generation:
            return None
        return body

    result: dict[str, Any] = opkit.wait_for(f"{namespace}/{name} Ready={status} ({reason})", check, timeout)
    return result


def events(cluster: devenv.Cluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    selector = f"involvedObject.kind=RecurringJob,involvedObject.name={name}"
    items = opkit.kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector", selector)[
        "items"
    ]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def wait_event(cluster: devenv.Cluster, namespace: str, name: str, reason: str) -> tuple[str, str, str]:
    def check() -> tuple[str, str, str] | None:
        return next((e for e in events(cluster, namespace, name) if e[1] == reason), None)

    found: tuple[str, str, str] = opkit.wait_for(f"Event {reason} of {namespace}/{name}", check)
    return found


def merge_patch(cluster: devenv.Cluster, kind: str, name: str, namespace: str, patch: dict[str, Any]) -> None:
    cluster.kubectl("patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (only,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def is_subset(expected: Any, actual: Any) -> bool:
    """``expected`` is contained in ``actual`` (maps: key by key; lists: item by item, same length);
    the API server adds defaults, which a live object may have on top."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)
