"""The CronJob of a RecurringJob, as the body of a server-side apply, and the tick job ids.

**Exactly one job per tick.** Every Job the CronJob controller creates for a tick is named
``<cronjob>-<scheduled time in minutes since the epoch>`` (Kubernetes' own naming, which is
how the controller itself avoids creating a tick twice), and the Job controller labels the
Job's pods with ``batch.kubernetes.io/job-name``. The pod reads that label through the
downward API and enqueues with the job id

.. code-block:: text

    rj_<namespace>_<Job name>        e.g. rj_glec_daily-analytics-29345760

so the id is a function of the RecurringJob (its namespace and CronJob name) and the
scheduled time, and of nothing a pod could change: a retried pod, two overlapping pods of
one Job, or the same tick's Job created again all enqueue the same id, and
``jobqueue enqueue`` adds an existing id at most once (it reports the duplicate and exits 0).
A manual run (``kubectl create job --from=cronjob/<name> <job>``) gets a Job name of its
own and therefore a job id of its own. ``_`` separates the parts because neither a
namespace nor a CronJob-made Job name can contain it; RQ's job ids allow only letters,
digits, ``_`` and ``-`` (so a manual Job whose name contains ``.`` cannot enqueue: its pod
fails with a message saying so).

**The pod** runs ``jobqueue enqueue`` (the worker image contains the CLI) with the
RecurringJob's function, arguments and ``jobOptions``; the CLI applies the queue's
published defaults underneath. Literal arguments have every ``$`` doubled, because the
kubelet expands ``$(VAR)`` in a container's command: only ``$(JOB_NAME)`` is meant. The pod
passes the ``restricted`` Pod Security Standard, has no API token, asks for little CPU and
memory, and gets ``JOBQUEUE_REDIS_URL`` exactly as the queue's workers do: from the same
Secret (``spec.redis.urlSecretRef``, or the namespace's Secret of the operator's default
Redis), never as a literal value.

**Schedules.** :func:`next_schedule_time` reads a schedule the way the CronJob controller
does (the grammar the CRD admits, :data:`jobqueue_operator.models.CRON_FIELDS`) and
computes the next tick in the RecurringJob's time zone with croniter.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import zoneinfo
from dataclasses import dataclass
from typing import Any, Final

from croniter import CroniterBadDateError, croniter

from jobqueue_operator import models
from jobqueue_operator.builders import deployment, names

COMPONENT: Final = "recurring-job"
CONTAINER: Final = "enqueue"
RECURRINGJOB_LABEL: Final = f"{models.GROUP}/recurringjob"
#: Server-side label selector of every CronJob the operator manages.
CRONJOB_SELECTOR: Final = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY},{names.COMPONENT_LABEL}={COMPONENT}"
#: The Job controller puts this label on every pod of a Job; its value is the Job's name.
JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
#: The pod's environment variable holding its Job's name (referenced as ``$(JOB_NAME)``).
JOB_NAME_ENV: Final = "JOB_NAME"
JOB_ID_PREFIX: Final = "rj"

#: Kubernetes appends ``-<11 digits>`` to a CronJob's name for each Job, and Job names
#: become label values (63 characters at most): CronJob names are capped at 52.
MAX_CRONJOB_NAME: Final = 52
_HASH_LENGTH: Final = 8

#: ``jobqueue enqueue`` exits 2 for bad usage or bad JSON: retrying cannot help.
USAGE_EXIT_CODE: Final = 2
#: Pod retries of one tick (Redis briefly away, node lost); each retry enqueues the same id.
BACKOFF_LIMIT: Final = 3
#: An enqueue takes well under a second; a Job still running after this is stuck (Redis
#: unreachable for minutes) and, with concurrencyPolicy Forbid, would block the next tick.
ACTIVE_DEADLINE_SECONDS: Final = 300
#: The CLI stops at once on SIGTERM; nothing to drain.
TERMINATION_GRACE_SECONDS: Final = 10
#: Measured: ``jobqueue enqueue`` peaks at ~45 MB RSS and uses a fraction of a CPU second.
RESOURCES: Final = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


@dataclass(frozen=True, kw_only=True)
class QueueTarget:
    """The JobQueue a RecurringJob enqueues into: where its jobs go and what image runs the CLI."""

    name: str
    queue_name: str
    spec: models.JobQueueSpec


def target(*, namespace: str, name: str, spec: models.JobQueueSpec) -> QueueTarget:
    return QueueTarget(name=name, queue_name=spec.effective_queue_name(namespace, name), spec=spec)


def cronjob_name(recurringjob: str) -> str:
    """``recurringjob`` itself when short enough, else a prefix and a hash of the whole name
    (deterministic, and distinct for distinct RecurringJob names)."""
    if len(recurringjob) <= MAX_CRONJOB_NAME:
        return recurringjob
    digest = hashlib.sha256(recurringjob.encode()).hexdigest()[:_HASH_LENGTH]
    return f"{recurringjob[: MAX_CRONJOB_NAME - _HASH_LENGTH - 1].rstrip('-.')}-{digest}"


def job_id(namespace: str, job_name: str) -> str:
    """The job id enqueued by the pods of Job ``job_name`` (see the module docstring)."""
    return f"{JOB_ID_PREFIX}_{namespace}_{job_name}"


def scheduled_job_name(cronjob: str, scheduled: datetime.datetime) -> str:
    """The name the CronJob controller gives the Job of the tick scheduled at ``scheduled``."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def labels(recurringjob: str) -> dict[str, str]:
    """Labels of the CronJob, its Jobs and their pods."""
    return {
        "app.kubernetes.io/name": "jobqueue-recurring-job",
        "app.kubernetes.io/instance": recurringjob,
        names.COMPONENT_LABEL: COMPONENT,
        names.MANAGED_BY_LABEL: names.MANAGED_BY,
        "app.kubernetes.io/part-of": "jobqueue",
        RECURRINGJOB_LABEL: recurringjob,
    }


def recurringjob_of(cronjob_labels: dict[str, str] | None) -> str | None:
    """The RecurringJob a CronJob belongs to, from its labels."""
    return (cronjob_labels or {}).get(RECURRINGJOB_LABEL)


def _literal(text: str) -> str:
    """``text`` as a container argument the kubelet leaves alone (``$`` → ``$$``)."""
    return text.replace("$", "$$")


def _json(value: Any) -> str:
    # sorted keys: the same spec always gives the same command, so re-applies change nothing
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def enqueue_command(*, namespace: str, spec: models.RecurringJobSpec, queue_name: str) -> list[str]:
    """``jobqueue enqueue …`` for one tick; the job id comes from ``$(JOB_NAME)``."""
    command = ["jobqueue", "enqueue", queue_name, spec.function]
    if spec.args:
        command += ["--args-json", _json(spec.args)]
    if spec.keyword_args:
        command += ["--kwargs-json", _json(spec.keyword_args)]
    if spec.job_options is not None:
        options = spec.job_options.model_dump(by_alias=True, exclude_none=True, mode="json")
        if options:
            command += ["--options-json", _json(options)]
    if spec.priority is not None:
        command += ["--priority", str(spec.priority)]
    return [*map(_literal, command), "--job-id", _literal(job_id(namespace, "")) + f"$({JOB_NAME_ENV})"]


def build(
    *,
    namespace: str,
    name: str,
    uid: str,
    spec: models.RecurringJobSpec,
    queue: QueueTarget,
    defaults: deployment.WorkerDefaults,
    suspend: bool = False,
) -> dict[str, Any]:
    """The apply body of RecurringJob ``namespace/name``'s CronJob; ``suspend`` suspends it
    whatever the spec says (the operator does that while the target queue is missing)."""
    worker = queue.spec.worker
    job_labels = labels(name)
    annotations = {names.QUEUE_ANNOTATION: queue.queue_name}
    env = [
        # the same JOBQUEUE_REDIS_URL (and POD_NAME/POD_NAMESPACE) as the queue's workers
        *deployment.operator_env(queue.spec, defaults, jobqueue=queue.name),
        {
            "name": JOB_NAME_ENV,
            "valueFrom": {
                "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}
            },
        },
    ]
    container = _drop_none(
        {
            "name": CONTAINER,
            "image": worker.image,
            "imagePullPolicy": worker.image_pull_policy or defaults.image_pull_policy,
            "command": enqueue_command(namespace=namespace, spec=spec, queue_name=queue.queue_name),
            "env": env,
            "resources": RESOURCES,
            "securityContext": deployment.container_security(),
        }
    )
    pod_spec = _drop_none(
        {
            "restartPolicy": "Never",
            "containers": [container],
            "securityContext": deployment.pod_security(worker),
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            # the workers' identity: registry credentials attached to their ServiceAccount apply
            "serviceAccountName": worker.service_account_name,
            "imagePullSecrets": [s.model_dump() for s in worker.image_pull_secrets or []] or None,
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(name),
            "namespace": namespace,
            "labels": dict(job_labels),
            "annotations": dict(annotations),
            "ownerReferences": [names.owner_reference(kind=models.RECURRINGJOB_KIND, name=name, uid=uid)],
        },
        "spec": _drop_none(
            {
                "schedule": spec.schedule,
                "timeZone": spec.time_zone,
                "suspend": spec.suspend or suspend,
                "concurrencyPolicy": spec.concurrency_policy,
                "startingDeadlineSeconds": spec.starting_deadline_seconds,
                "successfulJobsHistoryLimit": spec.successful_jobs_history_limit,
                "failedJobsHistoryLimit": spec.failed_jobs_history_limit,
                "jobTemplate": {
                    "metadata": {"labels": dict(job_labels), "annotations": dict(annotations)},
                    "spec": {
                        "backoffLimit": BACKOFF_LIMIT,
                        "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
                        "podFailurePolicy": {
                            "rules": [
                                {
                                    "action": "FailJob",
                                    "onExitCodes": {
                                        "containerName": CONTAINER,
                                        "operator": "In",
                                        "values": [USAGE_EXIT_CODE],
                                    },
                                },
                                # an evicted or preempted pod is not the enqueue's fault: retry it freely
                                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                            ]
                        },
                        "template": {
                            "metadata": {"labels": dict(job_labels), "annotations": dict(annotations)},
                            "spec": pod_spec,
                        },
                    },
                },
            }
        ),
    }


def _drop_none(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


# --------------------------------------------------------------------------------------
# Schedules

_MACROS: Final = {
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
    "monthly": "0 0 1 * *",
    "weekly": "0 0 * * 0",
    "daily": "0 0 * * *",
    "midnight": "0 0 * * *",
    "hourly": "0 * * * *",
}


class NeverFires(ValueError):
    """The schedule names no existing time (e.g. "0 0 30 2 *"); Kubernetes accepts it anyway."""


def _plain(schedule: str) -> str:
    """``schedule`` in the plain numeric form croniter reads exactly like the CronJob
    controller: macros expanded, ``?`` as ``*``, names and zero-padded numbers as numbers,
    ``a/step`` as ``a-max/step``."""
    if schedule.startswith("@"):
        return _MACROS[schedule[1:]]
    fields = []
    for field, text in zip(models.CRON_FIELDS, schedule.split(), strict=True):
        items = []
        for item in text.split(","):
            base, _, step = item.partition("/")
            if base in ("*", "?"):
                plain = "*"
            else:
                low, _, high = base.partition("-")
                start = field.value(low)
                end = field.value(high) if high else (field.high if step else start)
                plain = str(start) if end == start and not step else f"{start}-{end}"
            items.append(f"{plain}/{int(step)}" if step else plain)
        fields.append(",".join(items))
    return " ".join(fields)


def next_schedule_time(schedule: str, time_zone: str, after: datetime.datetime) -> datetime.datetime:
    """The first tick strictly after ``after`` (UTC). Raises ``zoneinfo.ZoneInfoNotFoundError``
    for an unknown zone and :class:`NeverFires` for a schedule without ticks."""
    zone = zoneinfo.ZoneInfo(time_zone)
    try:
        ticks = croniter(_plain(schedule), after.astimezone(zone))
        tick: datetime.datetime = ticks.get_next(datetime.datetime)
    except CroniterBadDateError:
        raise NeverFires(f"schedule {schedule!r} names no date that exists") from None
    return tick.astimezone(datetime.UTC)


def known_time_zone(time_zone: str) -> bool:
    """Whether this process's time zone database knows ``time_zone`` (the API server, which
    checks it again when the CronJob is applied, has its own copy)."""
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
