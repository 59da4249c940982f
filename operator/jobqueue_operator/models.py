"""The JobQueue and RecurringJob APIs as pydantic models: the one source of the CRDs.

:mod:`jobqueue_operator.crdgen` turns these models into the CRDs' OpenAPI schemas, so the
field names (camelCase aliases), ranges, defaults, descriptions (``kubectl explain``) and
the CEL rules attached with :func:`cel` are what the API server enforces. The operator then
parses the objects it watches with the same models, so Python and the API server agree on
every default.

Validation lives in the CRD, not here: the API server refuses a bad object before anybody
sees it, with a message naming the field. The pydantic constraints below are the ranges the
schema declares; the cross-field rules are CEL only (Python trusts what the server
accepted). ``extra="ignore"`` on purpose: an operator one version behind must still read
objects that carry a field it does not know yet.

``spec.jobDefaults`` and ``spec.jobOptions`` are :class:`jobqueue.settings.JobOptions`, the
data plane's own model, so the queue's declared defaults and what producers and workers
apply are the same thing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobqueue.patterns import PY_FUNCTION, PY_MODULE
from jobqueue.settings import JobOptions, KeyRateLimit, RateLimit

GROUP: Final = "jobqueue.glec.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

JOBQUEUE_KIND: Final = "JobQueue"
JOBQUEUE_PLURAL: Final = "jobqueues"
RECURRINGJOB_KIND: Final = "RecurringJob"
RECURRINGJOB_PLURAL: Final = "recurringjobs"

#: The object's name becomes a label value on the worker pods (63 characters at most).
MAX_NAME_LENGTH: Final = 63

#: Environment variables the operator sets on every worker; ``worker.env`` may not redefine them.
RESERVED_ENV: Final = ("JOBQUEUE_REDIS_URL", "POD_NAME", "POD_NAMESPACE", "JOBQUEUE_NAME")

# Regular expressions shared by the CEL rules (CEL uses RE2: no look-arounds).
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUEUE_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
LABEL_KEY: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE: Final = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
ENV_NAME: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
DATA_KEY: Final = r"^[-._a-zA-Z0-9]+$"


def cel(
    rule: str,
    message: str | None = None,
    *,
    field_path: str | None = None,
    message_expression: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry; the message must name the field and the reason."""
    out: dict[str, Any] = {"rule": rule}
    if message is not None:
        out["message"] = message
    if message_expression is not None:
        out["messageExpression"] = message_expression
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def rules(*entries: dict[str, Any]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules (for ``Field`` or ``model_config``)."""
    return {"x-kubernetes-validations": list(entries)}


def lit(text: str) -> str:
    """``text`` as a CEL string literal (regular expressions carry backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pattern_rule(field: str, regex: str, what: str) -> dict[str, Any]:
    return rules(cel(f"self.matches({lit(regex)})", f"{field} {what}"))


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


# --------------------------------------------------------------------------------------
# Embedded Kubernetes types, kept to the fields a worker pod needs (structural, permissive)

IntOrString = Annotated[int | str, Field(json_schema_extra={"maxLength": 64})]


class LocalObjectReference(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, description="name of the object")]


class OptionalLocalObjectReference(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, description="name of the object")]
    optional: bool | None = Field(default=None, description="do not fail when the object is missing")


class SecretKeyRef(_Model):
    """A key of a Secret in the JobQueue's namespace."""

    name: Annotated[
        str,
        Field(
            max_length=253,
            description="name of the Secret (same namespace)",
            json_schema_extra=_pattern_rule(
                "urlSecretRef.name", DNS_SUBDOMAIN, "must be a Secret name (lower-case DNS subdomain)"
            ),
        ),
    ]
    key: Annotated[
        str,
        Field(
            max_length=253,
            description="key in the Secret's data",
            json_schema_extra=_pattern_rule(
                "urlSecretRef.key", DATA_KEY, "must be a Secret data key (letters, digits, '-', '_', '.')"
            ),
        ),
    ]


_QUANTITY_MAP: dict[str, Any] = {
    "maxProperties": 16,
    "x-kubernetes-validations": [
        cel(
            "self.all(k, isQuantity(string(self[k])))",
            "resource amounts must be Kubernetes quantities (e.g. 500m, 256Mi, 2)",
        )
    ],
}


class ResourceRequirements(_Model):
    """CPU/memory requests and limits of the worker container (core/v1 ResourceRequirements)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) "
                "|| !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) "
                "|| !quantity(string(self.requests[k])).isGreaterThan(quantity(string(self.limits[k]))))",
                "resources.requests must not exceed resources.limits for the same resource",
            )
        )
    )

    limits: dict[str, IntOrString] | None = Field(
        default=None,
        description="most of each resource the container may use",
        json_schema_extra=_QUANTITY_MAP,
    )
    requests: dict[str, IntOrString] | None = Field(
        default=None,
        description="resources reserved for the container (scheduling)",
        json_schema_extra=_QUANTITY_MAP,
    )


class EnvVar(_Model):
    """An environment variable of the worker container (core/v1 EnvVar)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!(has(self.value) && has(self.valueFrom))",
                "worker.env: value and valueFrom are mutually exclusive",
            )
        )
    )

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            description="variable name",
            json_schema_extra=_pattern_rule(
                "worker.env name",
                ENV_NAME,
                "must consist of letters, digits, '_', '-' or '.' and must not start with a digit",
            ),
        ),
    ]
    value: str | None = Field(default=None, max_length=32768, description="literal value")
    value_from: dict[str, Any] | None = Field(
        default=None,
        alias="valueFrom",
        description="a source for the value (secretKeyRef, configMapKeyRef, fieldRef, "
        "resourceFieldRef), as in core/v1 EnvVarSource",
    )


class EnvFromSource(_Model):
    """All keys of a ConfigMap or Secret as environment variables (core/v1 EnvFromSource)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.configMapRef) != has(self.secretRef)",
                "worker.envFrom: each entry needs exactly one of configMapRef or secretRef",
            )
        )
    )

    prefix: str | None = Field(default=None, max_length=253, description="prepended to every key")
    config_map_ref: OptionalLocalObjectReference | None = Field(
        default=None, alias="configMapRef", description="a ConfigMap in the same namespace"
    )
    secret_ref: OptionalLocalObjectReference | None = Field(
        default=None, alias="secretRef", description="a Secret in the same namespace"
    )


class Toleration(_Model):
    """core/v1 Toleration."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "worker.tolerations: a toleration with operator Exists must not have a value",
            )
        )
    )

    key: str | None = Field(default=None, max_length=317, description="taint key; empty matches all keys")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal")
    value: str | None = Field(default=None, max_length=63, description="taint value (operator Equal)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] | None = Field(
        default=None, description="taint effect to match; empty matches all effects"
    )
    toleration_seconds: int | None = Field(
        default=None,
        alias="tolerationSeconds",
        description="NoExecute only: how long the pod stays bound after the taint appears",
    )


class WorkerSecurityContext(_Model):
    """The identity the worker runs as. Everything else of the pod's security context is fixed by
    the operator so that worker pods pass the ``restricted`` Pod Security Standard."""

    run_as_user: int | None = Field(
        default=None,
        alias="runAsUser",
        ge=1,
        le=2147483647,
        description="UID of the worker process (never 0); default 65532 when unset",
    )
    run_as_group: int | None = Field(
        default=None, alias="runAsGroup", ge=0, le=2147483647, description="primary GID of the worker process"
    )
    fs_group: int | None = Field(
        default=None, alias="fsGroup", ge=0, le=2147483647, description="GID owning mounted volumes"
    )


_STRING_MAP_LIMITS: dict[str, Any] = {"maxProperties": 64}


def _label_map_rules(field: str) -> dict[str, Any]:
    return {
        **_STRING_MAP_LIMITS,
        "x-kubernetes-validations": [
            cel(
                f"self.all(k, size(k) <= 317 && k.matches({lit(LABEL_KEY)}))",
                f"{field} keys must be valid label keys ([prefix/]name)",
            ),
            cel(
                f"self.all(k, self[k].matches({lit(LABEL_VALUE)}))",
                f"{field} values must be valid label values (at most 63 letters, digits, '-', '_', '.')",
            ),
            cel(
                "self.all(k, !k.startsWith('jobqueue.glec.io/'))",
                f"{field} must not use the operator's prefix jobqueue.glec.io/",
            ),
        ],
    }


# --------------------------------------------------------------------------------------
# JobQueue


class WorkerSpec(_Model):
    """The worker pods of the queue: image, allow-listed modules, per-pod concurrency, and the
    pod fields a platform team usually sets."""

    image: Annotated[
        str,
        Field(
            min_length=1,
            max_length=512,
            description="container image with the jobqueue package and the job modules",
            json_schema_extra=_pattern_rule("worker.image", r"^\S+$", "must not contain whitespace"),
        ),
    ]
    imports: Annotated[
        list[
            Annotated[
                str,
                Field(
                    max_length=200,
                    json_schema_extra=_pattern_rule(
                        "worker.imports entries",
                        PY_MODULE,
                        "must be dotted Python module names (e.g. glec.jobs)",
                    ),
                ),
            ]
        ],
        Field(
            min_length=1,
            max_length=64,
            description="modules whose @job functions this queue may run (the allow-list)",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ]
    concurrency_per_pod: int = Field(
        default=1,
        alias="concurrencyPerPod",
        ge=1,
        le=1000,
        description="jobs one pod runs at once (processes, or threads/async tasks with mode)",
    )
    mode: Literal["process", "thread", "async"] = Field(
        default="process",
        description="process: one forked process per job (CPU-bound); thread or async: I/O-bound jobs",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None,
        alias="imagePullPolicy",
        description="default: the operator's JOBQUEUE_WORKER_IMAGE_PULL_POLICY, else Kubernetes' default",
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None,
        alias="imagePullSecrets",
        max_length=16,
        description="Secrets with the registry credentials for the image",
    )
    resources: ResourceRequirements | None = None
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=128,
        description=("extra environment variables of the worker container"),
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                cel(
                    "self.all(e, !(e.name in " + repr(list(RESERVED_ENV)) + "))",
                    "worker.env must not set " + ", ".join(RESERVED_ENV) + ": the operator sets them",
                )
            ],
        },
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None,
        alias="envFrom",
        max_length=32,
        description="ConfigMaps and Secrets whose keys become environment variables",
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        alias="nodeSelector",
        description="node labels the worker pods must run on",
        json_schema_extra=_STRING_MAP_LIMITS,
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="taints the worker pods tolerate"
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="core/v1 Affinity (node/pod affinity and anti-affinity), passed through"
    )
    topology_spread_constraints: list[dict[str, Any]] | None = Field(
        default=None,
        alias="topologySpreadConstraints",
        max_length=8,
        description="core/v1 TopologySpreadConstraint list, passed through",
    )
    service_account_name: str | None = Field(
        default=None,
        alias="serviceAccountName",
        max_length=253,
        description="ServiceAccount of the worker pods (default: the namespace's default)",
        json_schema_extra=_pattern_rule(
            "worker.serviceAccountName",
            DNS_SUBDOMAIN,
            "must be a ServiceAccount name (lower-case DNS subdomain)",
        ),
    )
    automount_service_account_token: bool = Field(
        default=False,
        alias="automountServiceAccountToken",
        description="mount an API token into the workers (they do not need one to run jobs)",
    )
    priority_class_name: str | None = Field(
        default=None,
        alias="priorityClassName",
        max_length=253,
        description="override the PriorityClass the operator derives from spec.priority",
        json_schema_extra=_pattern_rule(
            "worker.priorityClassName",
            DNS_SUBDOMAIN,
            "must be a PriorityClass name (lower-case DNS subdomain)",
        ),
    )
    pod_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        alias="podLabels",
        description="extra labels of the worker pods",
        json_schema_extra=_label_map_rules("worker.podLabels"),
    )
    pod_annotations: dict[str, str] | None = Field(
        default=None,
        alias="podAnnotations",
        description="extra annotations of the worker pods",
        json_schema_extra=_STRING_MAP_LIMITS,
    )
    security_context: WorkerSecurityContext | None = Field(default=None, alias="securityContext")
    termination_grace_period_seconds: int | None = Field(
        default=None,
        alias="terminationGracePeriodSeconds",
        ge=0,
        le=7 * 86400,
        description="raise the drain time of a stopping worker; never below the job timeout + 30 s",
    )


class ScalingSpec(_Model):
    """Bounds and pacing of the autoscaler."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "scaling.minReplicas must not exceed scaling.maxReplicas",
                field_path=".minReplicas",
            )
        )
    )

    min_replicas: int = Field(
        default=0,
        alias="minReplicas",
        ge=0,
        le=1000,
        description="pods kept even without work (0 allows scale to zero)",
    )
    max_replicas: int | None = Field(
        default=None,
        alias="maxReplicas",
        ge=1,
        le=1000,
        description="most pods; default ceil(concurrency / worker.concurrencyPerPod)",
    )
    scale_down_delay_seconds: int = Field(
        default=60,
        alias="scaleDownDelaySeconds",
        ge=0,
        le=86400,
        description="demand must stay lower this long before pods are removed",
    )
    idle_seconds_before_zero: int = Field(
        default=300,
        alias="idleSecondsBeforeZero",
        ge=0,
        le=7 * 86400,
        description="no queued or running job this long before going to 0 (with minReplicas 0)",
    )


class RedisSpec(_Model):
    """Where the queue lives; default: the operator's configured Redis."""

    url_secret_ref: SecretKeyRef = Field(
        alias="urlSecretRef",
        description="Secret key holding the Redis URL (redis://, rediss://, "
        "or redis+sentinel://host:26379,…/service/db for a Redis watched by Sentinel)",
    )


class NotificationJob(_Model):
    """A job enqueued for each failure: ``function(notice)`` on another JobQueue's queue."""

    queue: Annotated[
        str,
        Field(
            max_length=MAX_NAME_LENGTH,
            description="name of a JobQueue in the same namespace that runs it",
            json_schema_extra=_pattern_rule(
                "failureNotification.job.queue",
                DNS_LABEL,
                "must be the name of a JobQueue (a lower-case DNS label)",
            ),
        ),
    ]
    function: Annotated[
        str,
        Field(
            max_length=300,
            description="dotted name of a @job function that queue allow-lists; called with "
            "one argument, the notice (type, title, message, details)",
            json_schema_extra=_pattern_rule(
                "failureNotification.job.function",
                PY_FUNCTION,
                "must be a dotted function name (module.function)",
            ),
        ),
    ]


class WebhookSecretRef(_Model):
    """The key of a Secret in the JobQueue's namespace that holds a webhook URL."""

    name: Annotated[
        str,
        Field(
            max_length=253,
            description="name of the Secret holding the webhook URL",
            json_schema_extra=_pattern_rule(
                "webhook.urlSecretRef.name", DNS_SUBDOMAIN, "must be a Secret name (lower-case DNS subdomain)"
            ),
        ),
    ]
    key: Annotated[
        str,
        Field(
            max_length=253,
            description="key of the webhook URL in that Secret's data",
            json_schema_extra=_pattern_rule(
                "webhook.urlSecretRef.key",
                DATA_KEY,
                "must be a Secret data key (letters, digits, '-', '_', '.')",
            ),
        ),
    ]


class Webhook(_Model):
    """An HTTP POST of the notice as JSON to a URL kept in a Secret."""

    url_secret_ref: WebhookSecretRef = Field(
        alias="urlSecretRef",
        description="Secret key holding the http:// or https:// URL (the operator must "
        "be allowed to read it: chart value rbac.notificationSecretNames)",
    )


class FailureNotification(_Model):
    """What happens besides an Event and a metric when a job of this queue fails for good
    (no attempt left): the seed's admin notification, with the job's id, queue, function,
    error, attempts and data."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel("has(self.job) || has(self.webhook)", "failureNotification needs job, webhook or both")
        )
    )

    job: NotificationJob | None = Field(default=None, description="enqueue a notification job")
    webhook: Webhook | None = Field(default=None, description="POST the notice to a webhook")


def _ceil_div(a: str, b: str) -> str:
    return f"(({a} + {b} - 1) / {b})"


_PODS_FOR_CONCURRENCY = _ceil_div("self.concurrency", "self.worker.concurrencyPerPod")
_NO_POD_SIZE = "self.worker.concurrencyPerPod < 1"


class JobQueueSpec(_Model):
    """A queue: its RQ name, importance, limits, workers, scaling and job defaults."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.worker.concurrencyPerPod <= self.concurrency",
                "worker.concurrencyPerPod must not exceed concurrency, the limit for the whole queue",
                field_path=".worker.concurrencyPerPod",
            ),
            # The ceil rules divide by concurrencyPerPod: below its minimum (which the schema
            # reports) they pass, so a 0 shows one reason and no "division by zero" beside it.
            cel(
                f"{_NO_POD_SIZE} || !has(self.scaling) || !has(self.scaling.maxReplicas) "
                f"|| self.scaling.maxReplicas <= {_PODS_FOR_CONCURRENCY}",
                "scaling.maxReplicas must not exceed ceil(concurrency / worker.concurrencyPerPod): more "
                "pods would run more jobs at once than concurrency allows",
                field_path=".scaling.maxReplicas",
            ),
            cel(
                f"{_NO_POD_SIZE} || !has(self.scaling) || has(self.scaling.maxReplicas) "
                f"|| self.scaling.minReplicas <= {_PODS_FOR_CONCURRENCY}",
                "scaling.minReplicas must not exceed the default maxReplicas, ceil(concurrency / "
                "worker.concurrencyPerPod); raise concurrency or set scaling.maxReplicas",
                field_path=".scaling.minReplicas",
            ),
        )
    )

    queue_name: str | None = Field(
        default=None,
        alias="queueName",
        min_length=1,
        max_length=100,
        description='RQ queue name in Redis; default "<namespace>.<name>"',
        json_schema_extra=_pattern_rule(
            "queueName",
            QUEUE_NAME,
            "may contain only letters, digits, '.', '_', ':' and '-', and must start with a letter or digit",
        ),
    )
    priority: int = Field(default=3, ge=1, le=5, description="1 = most important ... 5 = least")
    concurrency: int = Field(
        default=1, ge=1, le=10000, description="most jobs running at once for the whole queue"
    )
    rate_limit: RateLimit | None = Field(
        default=None,
        alias="rateLimit",
        description="at most rateLimit.jobs jobs of the queue start in any rateLimit.perSeconds window, "
        "over every worker (exact: enforced in Redis where workers claim jobs)",
    )
    key_rate_limit: KeyRateLimit | None = Field(
        default=None,
        alias="keyRateLimit",
        description="at most keyRateLimit.jobs jobs with the same rateKey (a tenant, an API host: set by "
        "the producer) start in any keyRateLimit.perSeconds window, each key on its own; "
        "jobs of a key at its limit wait without holding up other keys",
    )
    worker: WorkerSpec
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, json_schema_extra={"default": {}})
    job_defaults: JobOptions | None = Field(
        default=None,
        alias="jobDefaults",
        description="defaults of every job of this queue (a job may override them)",
    )
    redis: RedisSpec | None = None
    suspend: bool = Field(default=False, description="workers finish what they run and take nothing new")
    failure_notification: FailureNotification | None = Field(
        default=None,
        alias="failureNotification",
        description="notify someone when a job fails for good (besides the Event and the metric)",
    )

    def effective_queue_name(self, namespace: str, name: str) -> str:
        return self.queue_name or default_queue_name(namespace, name)

    @property
    def effective_max_replicas(self) -> int:
        if self.scaling.max_replicas is not None:
            return self.scaling.max_replicas
        return -(-self.concurrency // self.worker.concurrency_per_pod)


def default_queue_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Model):
    """metav1.Condition."""

    type: str = Field(max_length=316, description="Ready, RedisReachable, ...")
    status: ConditionStatus = Field(description="True, False or Unknown")
    reason: str = Field(max_length=1024, description="CamelCase machine-readable cause")
    message: str = Field(default="", max_length=32768, description="for humans")
    last_transition_time: datetime.datetime = Field(
        alias="lastTransitionTime", description="when status last changed"
    )
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", ge=0, description="the generation this condition describes"
    )


_CONDITIONS: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class JobQueueStatus(_Model):
    """What the operator (and the autoscaler) observed. Written through the status subresource
    with server-side apply: the operator's fields under the field manager ``jobqueue-operator``,
    the backlog and scaling fields under ``jobqueue-autoscaler``."""

    # --- written by the operator (reconcile and Deployment watch)
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="the metadata.generation last reconciled"
    )
    queue_name: str | None = Field(
        default=None, alias="queueName", description="the RQ queue name in effect (published in Redis)"
    )
    replicas: int | None = Field(default=None, description="worker pods (from the Deployment)")
    ready_replicas: int | None = Field(default=None, alias="readyReplicas", description="ready worker pods")
    workers: str | None = Field(default=None, description='"ready/desired" worker pods')
    conditions: list[Condition] | None = Field(
        default=None, description="Ready and RedisReachable", json_schema_extra=_CONDITIONS
    )
    # --- written by the autoscaler
    queued: int | None = Field(default=None, description="jobs waiting in the queue")
    scheduled: int | None = Field(default=None, description="jobs delayed or waiting for a retry")
    running: int | None = Field(default=None, description="jobs being run by a worker")
    failed: int | None = Field(default=None, description="jobs in the failed registry")
    oldest_queued_seconds: float | None = Field(
        default=None, alias="oldestQueuedSeconds", description="age of the oldest waiting job"
    )
    desired_replicas: int | None = Field(
        default=None, alias="desiredReplicas", description="worker pods the autoscaler wants now"
    )
    last_scale_time: datetime.datetime | None = Field(
        default=None, alias="lastScaleTime", description="when the autoscaler last changed replicas"
    )
    last_scale_reason: str | None = Field(
        default=None, alias="lastScaleReason", description="why it did (the demand it saw)"
    )
    paused: bool | None = Field(
        default=None,
        description="paused in Redis (`jobqueue pause`, the admin "
        "API): workers take nothing new, replicas are held at minReplicas",
    )
    rate_limited: bool | None = Field(
        default=None,
        alias="rateLimited",
        description="spec.rateLimit is holding jobs back now (it cut a claim short within the last 2 s)",
    )


# --------------------------------------------------------------------------------------
# RecurringJob
#
# The schedule grammar is the CronJob controller's (robfig/cron v3 ``ParseStandard``):
# Kubernetes checks it only when a CronJob is written, so the RecurringJob's own CRD must
# refuse everything that CronJob validation would refuse — otherwise a bad schedule would be
# accepted here and surface only later, as an error of the operator's apply. The rules
# below are deliberately a little *stricter* than Kubernetes (no ``*-5``, no empty list
# items, no ``+5``, no tabs or leading/trailing spaces, no ``@every``): anything they accept,
# the CronJob API accepts too, and tests/integration/recurring checks that on the real server.


@dataclass(frozen=True)
class CronField:
    """One field of a five-field cron schedule, as Kubernetes' CronJob validation reads it."""

    label: str
    ordinal: str
    low: int
    high: int
    #: RE2 alternatives for ``low``..``high`` without leading zeros
    numbers: str
    #: names accepted instead of numbers (any case), in value order from ``low``
    names: tuple[str, ...] = ()

    @property
    def value_regex(self) -> str:
        named = f"|(?i:{'|'.join(self.names)})" if self.names else ""
        return f"(0*({self.numbers}){named})"

    @property
    def regex(self) -> str:
        """A whole field: comma-separated ``*``, ``?``, ``v`` or ``a-b``, each with an optional ``/step``."""
        value = self.value_regex
        item = rf"(\*|\?|{value}(-{value})?)(/0*[1-9][0-9]{{0,3}})?"
        return f"^{item}(,{item})*$"

    @property
    def expected(self) -> str:
        names = f" (or {self.names[0].upper()}-{self.names[-1].upper()})" if self.names else ""
        return (
            f"*, ?, a value {self.low}-{self.high}{names}, a range a-b with a <= b, or a comma-separated "
            f"list of these, each optionally followed by /step (step >= 1)"
        )

    def value(self, text: str) -> int:
        """The number of one value of this field (``05``, ``mon``)."""
        return int(text) if text.isdigit() else self.low + self.names.index(text.lower())


MONTH_NAMES: Final = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS: Final = (
    CronField("minute", "1st", 0, 59, "[0-9]|[1-5][0-9]"),
    CronField("hour", "2nd", 0, 23, "[0-9]|1[0-9]|2[0-3]"),
    CronField("day-of-month", "3rd", 1, 31, "[1-9]|[12][0-9]|3[01]"),
    CronField("month", "4th", 1, 12, "[1-9]|1[0-2]", MONTH_NAMES),
    # 0-6 only: Kubernetes refuses 7 for Sunday ("end of range (7) above maximum (6)")
    CronField("day-of-week", "5th", 0, 6, "[0-6]", WEEKDAY_NAMES),
)
#: The ``@`` macros Kubernetes accepts (lower case only; ``@every`` is refused on purpose, see below).
CRON_MACROS: Final = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
CRON_SHAPE: Final = rf"^(@({'|'.join(CRON_MACROS)})|\S+( +\S+){{4}})$"
#: CEL: the fields of a schedule (no ``cel.bind`` in CRD rules: each rule computes them again)
_CRON_PARTS: Final = "self.findAll('[^ ]+')"


def _cel_value(field: CronField, text: str) -> str:
    """CEL: the number of the value ``text`` (a CEL string expression) of ``field``."""
    if not field.names:
        return f"int({text})"
    table = ", ".join(f"'{name}': {field.low + i}" for i, name in enumerate(field.names))
    return f"({text}.matches('^[0-9]+$') ? int({text}) : {{{table}}}[{text}.lowerAscii()])"


def _cron_field_rule(index: int, field: CronField) -> dict[str, Any]:
    """CEL: field ``index`` matches its grammar and every range a-b has a <= b (Kubernetes
    refuses "beginning of range (5) beyond end of range (3)")."""
    part = f"{_CRON_PARTS}[{index}]"
    bound = "e.split('/')[0].split('-')"
    ordered = (
        f"{part}.split(',').all(e, size({bound}) < 2 || "
        f"{_cel_value(field, f'{bound}[0]')} <= {_cel_value(field, f'{bound}[1]')})"
    )
    rule = (
        f"self.startsWith('@') || size({_CRON_PARTS}) != 5 || "
        f"({part}.matches({lit(field.regex)}) && {ordered})"
    )
    what = f"the {field.label} field ({field.ordinal})"
    return cel(
        rule,
        f"schedule: {what} must be {field.expected}",
        message_expression=f"'schedule: {what} is \"' + {part} + '\"; expected {field.expected}'",
    )


#: Time zone names as the IANA database spells them ("UTC", "Asia/Seoul", "Etc/GMT+5",
#: "America/Argentina/Buenos_Aires"). Whether the zone exists is checked by the operator
#: (zoneinfo) and reported: a list of zones in the CRD would go stale with every tzdata release.
TIME_ZONE: Final = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"


class RecurringJobSpec(_Model):
    """A job enqueued on a schedule, through a CronJob owned by this object."""

    schedule: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            description='cron schedule (minute hour day-of-month month day-of-week), e.g. "0 0 * * *", '
            "or @yearly, @monthly, @weekly, @daily, @hourly",
            json_schema_extra=rules(
                cel(
                    f"self.matches({lit(CRON_SHAPE)})",
                    "schedule must be five cron fields (minute hour day-of-month month day-of-week) separated "
                    "by spaces, or one of " + ", ".join(f"@{m}" for m in CRON_MACROS),
                ),
                cel(
                    "!self.startsWith('@every')",
                    "schedule: @every intervals are not supported: write five cron fields "
                    '(e.g. "*/5 * * * *" for every 5 minutes)',
                ),
                cel("!self.contains('TZ')", "schedule must not contain TZ=/CRON_TZ=: use spec.timeZone"),
                *(_cron_field_rule(i, f) for i, f in enumerate(CRON_FIELDS)),
            ),
        ),
    ]
    time_zone: str = Field(
        default="UTC",
        alias="timeZone",
        min_length=1,
        max_length=64,
        description='IANA time zone of the schedule, e.g. "UTC" or "Asia/Seoul"',
        json_schema_extra=rules(
            cel(
                f"self.matches({lit(TIME_ZONE)})",
                'timeZone must be an IANA time zone name such as "UTC" or "Asia/Seoul"',
            ),
            cel(
                "self != 'Local'",
                'timeZone must be an explicit IANA time zone such as "UTC": "Local" (the zone of the '
                "kube-controller-manager) is not allowed",
            ),
        ),
    )
    queue: str = Field(
        max_length=63,
        description="name of a JobQueue in the same namespace",
        json_schema_extra=_pattern_rule("queue", DNS_LABEL, "must be the name of a JobQueue (DNS label)"),
    )
    function: str = Field(
        max_length=256,
        description="dotted path of a @job function, e.g. glec.jobs.daily_aggregate",
        json_schema_extra=_pattern_rule(
            "function", PY_FUNCTION, "must be a dotted path module.function (e.g. glec.jobs.cleanup)"
        ),
    )
    args: list[Any] | None = Field(
        default=None, max_length=64, description="positional arguments (JSON array)"
    )
    # Any JSON values, so an opaque object for the API server: CEL cannot check its keys.
    keyword_args: dict[str, Any] | None = Field(
        default=None,
        alias="kwargs",
        description="keyword arguments (JSON object)",
        json_schema_extra={"maxProperties": 64},
    )
    job_options: JobOptions | None = Field(
        default=None, alias="jobOptions", description="overrides of the queue's jobDefaults"
    )
    priority: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="priority level of each enqueued job, 1 = most important ... 5 = least; default 3",
    )
    suspend: bool = Field(default=False, description="stop enqueuing; enqueued jobs are untouched")
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Forbid",
        alias="concurrencyPolicy",
        description="what the CronJob does when a tick's enqueuing pod is still running",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        alias="startingDeadlineSeconds",
        ge=10,
        le=86400,
        description="a tick missed by more than this is skipped (at least 10: the CronJob "
        "controller checks every 10 s)",
    )
    successful_jobs_history_limit: int = Field(
        default=3,
        alias="successfulJobsHistoryLimit",
        ge=0,
        le=100,
        description="finished enqueuing Jobs (and their pods' logs) kept",
    )
    failed_jobs_history_limit: int = Field(
        default=1,
        alias="failedJobsHistoryLimit",
        ge=0,
        le=100,
        description="failed enqueuing Jobs (and their pods' logs) kept",
    )


class RecurringJobStatus(_Model):
    """What the operator observed, written through the status subresource by server-side apply
    (field manager ``jobqueue-operator``), only when something changed."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    cron_job_name: str | None = Field(
        default=None, alias="cronJobName", description="the CronJob that enqueues the jobs"
    )
    queue_name: str | None = Field(
        default=None, alias="queueName", description="RQ queue name of the target JobQueue"
    )
    last_schedule_time: datetime.datetime | None = Field(
        default=None, alias="lastScheduleTime", description="scheduled time of the latest tick"
    )
    last_successful_time: datetime.datetime | None = Field(
        default=None, alias="lastSuccessfulTime", description="when an enqueuing Job last succeeded"
    )
    last_job_id: str | None = Field(
        default=None, alias="lastJobId", description="job id of the latest tick (rj_<namespace>_<Job name>)"
    )
    last_job_status: str | None = Field(
        default=None,
        alias="lastJobStatus",
        description="that job's status in Redis: queued, scheduled, running, finished, failed, ...; "
        "enqueuing (its Job is still running), missing (not in Redis: the enqueue failed or "
        "the job's retention ended), unknown (Redis unreachable)",
    )
    next_schedule_time: datetime.datetime | None = Field(
        default=None, alias="nextScheduleTime", description="next tick (none while suspended or not ready)"
    )
    conditions: list[Condition] | None = Field(default=None, json_schema_extra=_CONDITIONS)
