"""Bad JobQueues and RecurringJobs are refused by the API server itself.

Each case applies the generated CRD's schema and CEL rules on the real kube-apiserver (no
operator involved): the object is created for real, and must be refused with a message
that names the field and says why. Valid objects are created alongside, so a rule that
refuses everything cannot pass.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from opkit import Mutation, at, without

import devenv

VALID_QUEUE: dict[str, Any] = {
    "priority": 2,
    "concurrency": 8,
    "worker": {"image": "registry.invalid/glec-jobs:1", "imports": ["glec.jobs"], "concurrencyPerPod": 2},
}

FULL_QUEUE: dict[str, Any] = {
    "queueName": "ei:update",
    "priority": 1,
    "concurrency": 20,
    "worker": {
        "image": "registry.invalid/glec-jobs:1.4.2",
        "imports": ["glec.jobs", "glec.more"],
        "concurrencyPerPod": 4,
        "mode": "async",
        "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "registry"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "envFrom": [
            {"configMapRef": {"name": "c"}},
            {"prefix": "X_", "secretRef": {"name": "s", "optional": True}},
        ],
        "nodeSelector": {"pool": "jobs"},
        "tolerations": [
            {"key": "jobs", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "serviceAccountName": "glec-jobs",
        "automountServiceAccountToken": True,
        "priorityClassName": "high",
        "podLabels": {"team": "logistics", "example.com/tier": "batch"},
        "podAnnotations": {"example.com/owner": "platform team"},
        "securityContext": {"runAsUser": 1000, "runAsGroup": 0, "fsGroup": 2000},
        "terminationGracePeriodSeconds": 900,
    },
    "scaling": {
        "minReplicas": 1,
        "maxReplicas": 5,
        "scaleDownDelaySeconds": 120,
        "idleSecondsBeforeZero": 600,
    },
    "jobDefaults": {
        "attempts": 3,
        "backoff": {"type": "exponential", "delaySeconds": 0.5, "maxDelaySeconds": 60, "jitter": 0.2},
        "timeoutSeconds": 30,
        "keepCompleted": {"ageSeconds": 3600},
        "keepFailed": {"ageSeconds": 0},
    },
    "redis": {"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}},
    "rateLimit": {"jobs": 100, "perSeconds": 0.5},
    "suspend": True,
}

VALID_RECURRING: dict[str, Any] = {
    "queue": "analytics",
    "schedule": "0 0 * * *",
    "timeZone": "Asia/Seoul",
    "function": "glec.jobs.daily_aggregate",
    "args": [1, "two", {"three": 3}],
    "kwargs": {"aggregation_type": "daily"},
    "jobOptions": {"attempts": 2, "timeoutSeconds": 600},
    "concurrencyPolicy": "Forbid",
    "startingDeadlineSeconds": 300,
    "successfulJobsHistoryLimit": 3,
    "failedJobsHistoryLimit": 1,
}


def both(*mutations: Mutation) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        for m in mutations:
            m(spec)

    return mutate


# (id, mutation of VALID_QUEUE, strings the API server's message must contain)
QUEUE_CASES: list[tuple[str, Mutation, list[str]]] = [
    ("priority-too-high", at("priority", 6), ["spec.priority", "less than or equal to 5"]),
    ("priority-zero", at("priority", 0), ["spec.priority", "greater than or equal to 1"]),
    ("priority-not-a-number", at("priority", "high"), ["spec.priority", "must be of type integer"]),
    ("concurrency-zero", at("concurrency", 0), ["spec.concurrency", "greater than or equal to 1"]),
    (
        "rate-limit-zero-jobs",
        at("rateLimit", {"jobs": 0, "perSeconds": 1}),
        ["spec.rateLimit.jobs", "greater than or equal to 1"],
    ),
    ("rate-limit-no-window", at("rateLimit", {"jobs": 10}), ["spec.rateLimit.perSeconds", "Required value"]),
    (
        "rate-limit-zero-window",
        at("rateLimit", {"jobs": 10, "perSeconds": 0}),
        ["spec.rateLimit.perSeconds", "rateLimit.perSeconds must be at least 0.01"],
    ),
    ("suspend-not-boolean", at("suspend", "yes"), ["spec.suspend", "must be of type boolean"]),
    ("no-worker", without("worker"), ["spec.worker", "Required value"]),
    ("no-image", without("worker.image"), ["spec.worker.image", "Required value"]),
    ("empty-image", at("worker.image", ""), ["spec.worker.image", "at least 1 chars long"]),
    (
        "image-with-space",
        at("worker.image", "glec jobs:1"),
        ["spec.worker.image", "must not contain whitespace"],
    ),
    ("no-imports", at("worker.imports", []), ["spec.worker.imports", "at least 1 items"]),
    (
        "import-not-a-module",
        at("worker.imports", ["glec-jobs"]),
        ["spec.worker.imports[0]", "must be dotted Python module names"],
    ),
    (
        "duplicate-imports",
        at("worker.imports", ["glec.jobs", "glec.jobs"]),
        ["spec.worker.imports[1]", "Duplicate value"],
    ),
    (
        "per-pod-zero",
        at("worker.concurrencyPerPod", 0),
        ["spec.worker.concurrencyPerPod", "greater than or equal to 1"],
    ),
    (
        "per-pod-above-concurrency",
        at("worker.concurrencyPerPod", 16),
        ["spec.worker.concurrencyPerPod", "must not exceed concurrency"],
    ),
    (
        "unknown-mode",
        at("worker.mode", "fork"),
        ["spec.worker.mode", 'Unsupported value: "fork"', '"process", "thread", "async"'],
    ),
    (
        "unknown-pull-policy",
        at("worker.imagePullPolicy", "Sometimes"),
        ["spec.worker.imagePullPolicy", 'Unsupported value: "Sometimes"'],
    ),
    (
        "queue-name-with-space",
        at("queueName", "ei update"),
        ["spec.queueName", "may contain only letters, digits"],
    ),
    (
        "queue-name-leading-dash",
        at("queueName", "-ei"),
        ["spec.queueName", "must start with a letter or digit"],
    ),
    ("queue-name-too-long", at("queueName", "q" * 101), ["spec.queueName", "may not be more than 100"]),
    (
        "min-above-max",
        both(at("scaling.minReplicas", 3), at("scaling.maxReplicas", 2)),
        ["spec.scaling.minReplicas", "scaling.minReplicas must not exceed scaling.maxReplicas"],
    ),
    (
        "max-above-concurrency",
        at("scaling.maxReplicas", 5),
        ["spec.scaling.maxReplicas", "must not exceed ceil(concurrency / worker.concurrencyPerPod)"],
    ),
    (
        "min-above-default-max",
        at("scaling.minReplicas", 5),
        ["spec.scaling.minReplicas", "must not exceed the default maxReplicas"],
    ),
    (
        "min-negative",
        at("scaling.minReplicas", -1),
        ["spec.scaling.minReplicas", "greater than or equal to 0"],
    ),
    ("max-zero", at("scaling.maxReplicas", 0), ["spec.scaling.maxReplicas", "greater than or equal to 1"]),
    (
        "scale-down-delay-too-long",
        at("scaling.scaleDownDelaySeconds", 100000),
        ["spec.scaling.scaleDownDelaySeconds", "less than or equal to 86400"],
    ),
    (
        "attempts-zero",
        at("jobDefaults.attempts", 0),
        ["spec.jobDefaults.attempts", "greater than or equal to 1"],
    ),
    (
        "unknown-backoff-type",
        at("jobDefaults.backoff", {"type": "linear"}),
        ["spec.jobDefaults.backoff.type", 'Unsupported value: "linear"', '"exponential", "fixed"'],
    ),
    (
        "max-delay-below-delay",
        at("jobDefaults.backoff", {"delaySeconds": 10, "maxDelaySeconds": 5}),
        ["spec.jobDefaults.backoff.maxDelaySeconds", "must not be below backoff.delaySeconds"],
    ),
    (
        "jitter-above-one",
        at("jobDefaults.backoff", {"jitter": 2}),
        ["spec.jobDefaults.backoff.jitter", "less than or equal to 1"],
    ),
    (
        "timeout-zero",
        at("jobDefaults.timeoutSeconds", 0),
        ["spec.jobDefaults.timeoutSeconds", "greater than or equal to 1"],
    ),
    (
        "retention-without-age",
        at("jobDefaults.keepCompleted", {}),
        ["spec.jobDefaults.keepCompleted.ageSeconds", "Required value"],
    ),
    (
        "secret-ref-without-key",
        at("redis", {"urlSecretRef": {"name": "jobqueue-redis"}}),
        ["spec.redis.urlSecretRef.key", "Required value"],
    ),
    (
        "secret-ref-bad-name",
        at("redis", {"urlSecretRef": {"name": "Jobqueue_Redis", "key": "url"}}),
        ["spec.redis.urlSecretRef.name", "must be a Secret name"],
    ),
    (
        "env-sets-redis-url",
        at("worker.env", [{"name": "JOBQUEUE_REDIS_URL", "value": "redis://x"}]),
        ["spec.worker.env", "must not set JOBQUEUE_REDIS_URL", "the operator sets them"],
    ),
    (
        "env-value-and-value-from",
        at("worker.env", [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]),
        ["spec.worker.env[0]", "value and valueFrom are mutually exclusive"],
    ),
    (
        "env-duplicate-name",
        at("worker.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        ["spec.worker.env[1]", "Duplicate value"],
    ),
    (
        "env-name-starts-with-digit",
        at("worker.env", [{"name": "1A", "value": "1"}]),
        ["spec.worker.env[0].name", "must not start with a digit"],
    ),
    (
        "env-from-both-sources",
        at("worker.envFrom", [{"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}]),
        ["spec.worker.envFrom[0]", "exactly one of configMapRef or secretRef"],
    ),
    (
        "toleration-exists-with-value",
        at("worker.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
        ["spec.worker.tolerations[0]", "operator Exists must not have a value"],
    ),
    (
        "toleration-unknown-effect",
        at("worker.tolerations", [{"key": "k", "effect": "Sometimes"}]),
        ["spec.worker.tolerations[0].effect", 'Unsupported value: "Sometimes"'],
    ),
    (
        "requests-above-limits",
        at("worker.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
        ["spec.worker.resources", "requests must not exceed resources.limits"],
    ),
    (
        "resource-not-a-quantity",
        at("worker.resources", {"requests": {"memory": "lots"}}),
        ["spec.worker.resources.requests", "must be Kubernetes quantities"],
    ),
    (
        "pod-label-value-with-space",
        at("worker.podLabels", {"team": "logistics team"}),
        ["spec.worker.podLabels", "values must be valid label values"],
    ),
    (
        "pod-label-value-too-long",
        at("worker.podLabels", {"team": "x" * 64}),
        ["spec.worker.podLabels.team", "may not be more than 63"],
    ),
    (
        "pod-label-bad-key",
        at("worker.podLabels", {"a/b/c": "x"}),
        ["spec.worker.podLabels", "keys must be valid label keys"],
    ),
    (
        "pod-label-operator-prefix",
        at("worker.podLabels", {"jobqueue.glec.io/jobqueue": "other"}),
        ["spec.worker.podLabels", "must not use the operator's prefix"],
    ),
    (
        "bad-service-account",
        at("worker.serviceAccountName", "Glec_Jobs"),
        ["spec.worker.serviceAccountName", "must be a ServiceAccount name"],
    ),
    (
        "run-as-root",
        at("worker.securityContext", {"runAsUser": 0}),
        ["spec.worker.securityContext.runAsUser", "greater than or equal to 1"],
    ),
    (
        "negative-grace-period",
        at("worker.terminationGracePeriodSeconds", -1),
        ["spec.worker.terminationGracePeriodSeconds", "greater than or equal to 0"],
    ),
    ("unknown-field", at("workers", {}), ['unknown field "spec.workers"']),
]

RECURRING_CASES: list[tuple[str, Mutation, list[str]]] = [
    ("schedule-in-words", at("schedule", "every day"), ["spec.schedule", "must be five cron fields"]),
    ("schedule-four-fields", at("schedule", "0 0 * *"), ["spec.schedule", "must be five cron fields"]),
    ("schedule-with-tz", at("schedule", "CRON_TZ=UTC 0 0 * * *"), ["spec.schedule", "use spec.timeZone"]),
    ("time-zone-with-spaces", at("timeZone", "Seoul time"), ["spec.timeZone", "must be an IANA time zone"]),
    ("queue-not-a-name", at("queue", "Analytics_Queue"), ["spec.queue", "must be the name of a JobQueue"]),
    ("function-without-module", at("function", "daily_aggregate"), ["spec.function", "dotted path"]),
    ("no-function", without("function"), ["spec.function", "Required value"]),
    (
        "unknown-concurrency-policy",
        at("concurrencyPolicy", "Sometimes"),
        ["spec.concurrencyPolicy", 'Unsupported value: "Sometimes"'],
    ),
    (
        "deadline-below-ten-seconds",
        at("startingDeadlineSeconds", 5),
        ["spec.startingDeadlineSeconds", "greater than or equal to 10"],
    ),
    (
        "job-options-attempts-zero",
        at("jobOptions.attempts", 0),
        ["spec.jobOptions.attempts", "greater than or equal to 1"],
    ),
]


def body(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def create(cluster: devenv.Cluster, obj: dict[str, Any]) -> tuple[int, str]:
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(obj), check=False)
    return result.returncode, result.stderr


def refused(cluster: devenv.Cluster, obj: dict[str, Any]) -> str:
    code, stderr = create(cluster, obj)
    assert code != 0, f"the API server accepted {json.dumps(obj['spec'])}"
    return stderr


def test_valid_objects_are_accepted(cluster: devenv.Cluster, namespace: str, crds: None) -> None:
    for name, kind, spec in (
        ("minimal", "JobQueue", VALID_QUEUE),
        ("everything", "JobQueue", FULL_QUEUE),
        ("daily", "RecurringJob", VALID_RECURRING),
    ):
        code, stderr = create(cluster, body(kind, name, namespace, spec))
        assert code == 0, stderr
    created = json.loads(cluster.kubectl("get", "jq", "minimal", "-n", namespace, "-o", "json").stdout)
    # the schema's defaults are applied by the API server
    assert created["spec"]["scaling"] == {
        "minReplicas": 0,
        "scaleDownDelaySeconds": 60,
        "idleSecondsBeforeZero": 300,
    }
    assert created["spec"]["worker"]["mode"] == "process"
    assert created["spec"]["suspend"] is False


BASES = {"JobQueue": VALID_QUEUE, "RecurringJob": VALID_RECURRING}
CASES = [("JobQueue", *case) for case in QUEUE_CASES] + [("RecurringJob", *case) for case in RECURRING_CASES]


@pytest.mark.parametrize(
    ("kind", "mutation", "expected"), [(c[0], *c[2:]) for c in CASES], ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
@pytest.mark.usefixtures("crds")
def test_invalid_object_is_refused_with_a_clear_message(
    cluster: devenv.Cluster, namespace: str, kind: str, mutation: Mutation, expected: list[str]
) -> None:
    spec = copy.deepcopy(BASES[kind])
    mutation(spec)
    message = refused(cluster, body(kind, "bad", namespace, spec))
    for text in expected:
        assert text in message, message
    # only the real reason: no CEL rule of the CRD may fail to evaluate on any refused input
    for noise in ("evaluating rule", "runtime error", "division by zero", "no such key", "internal error"):
        assert noise not in message, message


def test_the_corpus_is_large_enough() -> None:
    assert len(QUEUE_CASES) >= 30
    assert len({c[0] for c in QUEUE_CASES}) == len(QUEUE_CASES)


def test_a_name_too_long_for_a_label_is_refused(cluster: devenv.Cluster, namespace: str, crds: None) -> None:
    message = refused(cluster, body("JobQueue", "q" * 64, namespace, VALID_QUEUE))
    assert "metadata.name must be at most 63 characters" in message, message
