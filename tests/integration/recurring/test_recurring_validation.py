"""Bad RecurringJobs are refused by the API server itself, and what it accepts, Kubernetes'
CronJob validation accepts too.

Kubernetes checks a CronJob's schedule only when the CronJob is written; if the RecurringJob's
CRD let a schedule through that CronJob validation refuses, the mistake would surface late,
as a failed apply of the operator. So besides a corpus of invalid objects (each refused with
a message naming the field and the reason), the schedules of tests/unit/recurring/schedules.py
are sent to the real API server twice, as RecurringJobs and as CronJobs (server-side dry
runs), and the two verdicts are compared.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from opkit import Mutation, at, without

import devenv
from unit.recurring.schedules import INVALID, STRICTER, VALID

VALID_SPEC: dict[str, Any] = {
    "queue": "analytics",
    "schedule": "0 0 * * *",
    "timeZone": "Asia/Seoul",
    "function": "glec.jobs.daily_aggregate",
    "args": [1, "two", {"three": 3}, None],
    "kwargs": {"aggregation_type": "daily", "nested": {"x": [1, None]}},
    "jobOptions": {"attempts": 2, "timeoutSeconds": 600},
    "priority": 4,
    "concurrencyPolicy": "Forbid",
    "startingDeadlineSeconds": 300,
    "successfulJobsHistoryLimit": 3,
    "failedJobsHistoryLimit": 1,
}


def field(ordinal: str, label: str, value: str) -> str:
    return f'schedule: the {label} field ({ordinal}) is "{value}"'


SHAPE = "schedule must be five cron fields (minute hour day-of-month month day-of-week)"

CASES: list[tuple[str, Mutation, list[str]]] = [
    ("dow-seven", at("schedule", "0 0 * * 7"), ["spec.schedule", field("5th", "day-of-week", "7"), "0-6"]),
    ("step-zero", at("schedule", "*/0 * * * *"), [field("1st", "minute", "*/0"), "step >= 1"]),
    ("range-backwards", at("schedule", "5-3 * * * *"), [field("1st", "minute", "5-3"), "a <= b"]),
    ("named-range-backwards", at("schedule", "0 0 * * FRI-MON"), [field("5th", "day-of-week", "FRI-MON")]),
    ("hour-24", at("schedule", "0 24 * * *"), [field("2nd", "hour", "24"), "a value 0-23"]),
    ("day-32", at("schedule", "0 0 32 * *"), [field("3rd", "day-of-month", "32"), "1-31"]),
    ("month-13", at("schedule", "0 0 * 13 *"), [field("4th", "month", "13"), "1-12 (or JAN-DEC)"]),
    ("quartz-last-day", at("schedule", "0 0 L * *"), [field("3rd", "day-of-month", "L")]),
    ("words", at("schedule", "every day"), ["spec.schedule", SHAPE]),
    ("six-fields", at("schedule", "0 0 0 * * *"), [SHAPE]),
    ("upper-case-macro", at("schedule", "@DAILY"), [SHAPE, "@daily"]),
    ("every-interval", at("schedule", "@every 5m"), ["@every intervals are not supported"]),
    ("tz-in-schedule", at("schedule", "CRON_TZ=UTC 0 0 * * *"), ["spec.schedule", "use spec.timeZone"]),
    ("time-zone-in-words", at("timeZone", "Seoul time"), ["spec.timeZone", "must be an IANA time zone"]),
    ("time-zone-local", at("timeZone", "Local"), ["spec.timeZone", '"Local"', "is not allowed"]),
    ("no-queue", without("queue"), ["spec.queue", "Required value"]),
    ("queue-not-a-name", at("queue", "Analytics_Queue"), ["spec.queue", "must be the name of a JobQueue"]),
    ("function-without-module", at("function", "daily_aggregate"), ["spec.function", "dotted path"]),
    ("args-not-an-array", at("args", "[1, 2]"), ["spec.args", "must be of type array"]),
    ("kwargs-not-an-object", at("kwargs", ["daily"]), ["spec.kwargs", "must be of type object"]),
    ("too-many-args", at("args", list(range(65))), ["spec.args", "must have at most 64 items"]),
    (
        "policy-not-in-enum",
        at("concurrencyPolicy", "Sometimes"),
        ["spec.concurrencyPolicy", 'Unsupported value: "Sometimes"'],
    ),
    (
        "deadline-too-short",
        at("startingDeadlineSeconds", 5),
        ["spec.startingDeadlineSeconds", "greater than or equal to 10"],
    ),
    (
        "negative-history",
        at("successfulJobsHistoryLimit", -1),
        ["spec.successfulJobsHistoryLimit", "greater than or equal to 0"],
    ),
    (
        "history-too-long",
        at("failedJobsHistoryLimit", 101),
        ["spec.failedJobsHistoryLimit", "less than or equal to 100"],
    ),
    ("priority-six", at("priority", 6), ["spec.priority", "less than or equal to 5"]),
    (
        "attempts-zero",
        at("jobOptions.attempts", 0),
        ["spec.jobOptions.attempts", "greater than or equal to 1"],
    ),
    ("misspelt-field", at("schedul", "0 0 * * *"), ['unknown field "spec.schedul"']),
]


def body(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "jobqueue.glec.io/v1alpha1",
        "kind": "RecurringJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cronjob(name: str, namespace: str, schedule: str) -> dict[str, Any]:
    pod = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.invalid/x:1"}]}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": pod}}}},
    }


def dry_run(cluster: devenv.Cluster, objects: list[dict[str, Any]]) -> set[str]:
    """Names of ``objects`` the API server accepts (one server-side dry run for all of them)."""
    items = {"apiVersion": "v1", "kind": "List", "items": objects}
    result = cluster.kubectl(
        "create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(items), check=False
    )
    return {line.rsplit("/", 1)[1] for line in result.stdout.split()}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 15
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.usefixtures("crds")
def test_valid_recurring_jobs_are_accepted(cluster: devenv.Cluster, namespace: str) -> None:
    minimal = {"queue": "cleanup", "schedule": "0 2 * * *", "function": "glec.jobs.cleanup_old_data"}
    for name, spec in (("everything", VALID_SPEC), ("minimal", minimal)):
        cluster.kubectl("create", "-f", "-", input=json.dumps(body(name, namespace, spec)))
    created = json.loads(cluster.kubectl("get", "rj", "minimal", "-n", namespace, "-o", "json").stdout)
    assert created["spec"] == {
        **minimal,
        "timeZone": "UTC",
        "suspend": False,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
    }
    everything = json.loads(cluster.kubectl("get", "rj", "everything", "-n", namespace, "-o", "json").stdout)
    assert everything["spec"]["args"] == VALID_SPEC["args"]  # JSON values as given, nulls included
    assert everything["spec"]["kwargs"] == VALID_SPEC["kwargs"]


@pytest.mark.parametrize(("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.usefixtures("crds")
def test_invalid_recurring_job_is_refused_with_a_clear_message(
    cluster: devenv.Cluster, namespace: str, mutation: Mutation, expected: list[str]
) -> None:
    spec = copy.deepcopy(VALID_SPEC)
    mutation(spec)
    result = cluster.kubectl("create", "-f", "-", input=json.dumps(body("bad", namespace, spec)), check=False)
    assert result.returncode != 0, f"the API server accepted {json.dumps(spec)}"
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.usefixtures("crds")
def test_what_the_crd_accepts_a_cronjob_accepts(cluster: devenv.Cluster, namespace: str) -> None:
    schedules = [*VALID, *INVALID]
    name = {s: f"s{i}" for i, s in enumerate(schedules)}
    spec = {"queue": "q", "function": "glec.jobs.f"}
    rj_ok = dry_run(cluster, [body(name[s], namespace, {**spec, "schedule": s}) for s in schedules])
    cj_ok = dry_run(cluster, [cronjob(name[s], namespace, s) for s in schedules])
    assert rj_ok == {name[s] for s in VALID}  # the CRD's verdicts, on the real server
    assert cj_ok == {name[s] for s in [*VALID, *STRICTER]}  # Kubernetes' own verdicts
    assert rj_ok <= cj_ok  # hence: no schedule the RecurringJob accepts can fail as a CronJob


@pytest.mark.usefixtures("crds")
def test_unknown_time_zones_pass_the_crd_and_are_left_to_the_operator(
    cluster: devenv.Cluster, namespace: str
) -> None:
    """A zone's existence depends on the time zone database, which changes with every tzdata
    release: the CRD checks the shape, the operator reports unknown zones (see
    test_recurring_reconcile.py); Kubernetes itself refuses them for a CronJob."""
    spec = {"queue": "q", "function": "glec.jobs.f", "schedule": "@daily", "timeZone": "Mars/Olympus"}
    assert dry_run(cluster, [body("tz", namespace, spec)]) == {"tz"}
    refused = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        check=False,
        input=json.dumps(
            {
                **cronjob("tz", namespace, "@daily"),
                "spec": {**cronjob("tz", namespace, "@daily")["spec"], "timeZone": "Mars/Olympus"},
            }
        ),
    )
    assert re.search(r"unknown time zone Mars/Olympus", refused.stderr), refused.stderr
