"""Operator configuration, read once from ``JOBQUEUE_*`` environment variables.

Environment variables because that is what a Deployment (and the Helm chart) sets most
simply, and because every setting here is fixed for the life of the process. Invalid
values stop the operator at start with a message naming the variable, rather than being
silently replaced by a default.

========================================  ==========================================================
variable                                  meaning (default)
========================================  ==========================================================
``JOBQUEUE_NAMESPACES``                   comma-separated namespaces to serve; empty: all (empty)
``JOBQUEUE_REDIS_URL``                    Redis of queues without ``spec.redis`` (none)
``JOBQUEUE_METRICS_PORT``                 Prometheus ``/metrics`` port; 0 disables it (8080)
``JOBQUEUE_HEALTH_PORT``                  kopf liveness ``/healthz`` port; 0 disables it (8081)
``JOBQUEUE_LOG_LEVEL``                    DEBUG, INFO, WARNING, ERROR (INFO)
``JOBQUEUE_LOG_FORMAT``                   json or plain (json)
``JOBQUEUE_PRIORITY_CLASS_PREFIX``        ``<prefix><priority>`` becomes the workers' priorityClassName;
                                          empty: not set (empty)
``JOBQUEUE_WORKER_IMAGE_PULL_POLICY``     imagePullPolicy of workers whose queue sets none (unset)
``JOBQUEUE_RESYNC_SECONDS``               period of the settings sweep (30)
``JOBQUEUE_REDIS_TIMEOUT_SECONDS``        connect/read timeout of the operator's Redis calls (2)
``JOBQUEUE_POLL_INTERVAL``                seconds between two autoscaler passes over every queue;
                                          0 turns the autoscaler (and lost-job recovery) off,
                                          leaving replicas to someone else, e.g. KEDA (1)
``JOBQUEUE_WORKER_BUDGET``                most worker pods of all queues together, shared out by
                                          priority; empty: no limit (empty)
``JOBQUEUE_REDIS_ISOLATION``              ``namespace``: each namespace gets its own database and
                                          ACL user on the default Redis, and only its own
                                          credentials; ``none``: every namespace gets the
                                          operator's URL (docs/security.md) (none; the
                                          chart's default is namespace)
``JOBQUEUE_REDIS_ALLOWED_HOSTS``          comma-separated hosts a ``spec.redis`` URL may name
                                          (``*`` globs, ``host:port``, IP networks like
                                          ``10.0.0.0/8``); empty: any host. ``unix://`` URLs are
                                          always refused there (empty)
``JOBQUEUE_LEADER_LEASE``                 name of the Lease (in ``POD_NAMESPACE``) whose holder
                                          alone runs the operator; empty: no election, run at
                                          once — one replica only (empty)
``JOBQUEUE_LEADER_LEASE_SECONDS``         how long an unrenewed Lease stays its holder's (3)
``JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS`` the leader stops when it could not renew this long (2)
``JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS``  how often the leader renews and a standby looks (0.5)
``JOBQUEUE_SHARDS``                       spread the autoscaler's queues over the replicas in this many
                                          shards, a Lease each (:mod:`.sharding`); needs
                                          ``JOBQUEUE_LEADER_LEASE``; 0: the leader alone scales (0)
========================================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from jobqueue_operator import errors, hostpolicy

PREFIX: Final = "JOBQUEUE_"
DEFAULT_METRICS_PORT: Final = 8080
DEFAULT_HEALTH_PORT: Final = 8081
#: Every queue's published settings are re-checked this often; also how soon a queue
#: whose Redis or Secret was broken recovers without any change to the JobQueue.
DEFAULT_RESYNC_SECONDS: Final = 30.0
#: Short on purpose: an unreachable Redis must cost one queue's reconcile seconds, not the
#: operator its responsiveness for every other queue.
DEFAULT_REDIS_TIMEOUT_SECONDS: Final = 2.0
#: The autoscaler's pass over every queue: a burst is seen within a second, and one pass
#: over a thousand queues costs one Redis round trip and a few ms of CPU.
DEFAULT_POLL_INTERVAL: Final = 1.0
#: Below this the poller would mostly measure itself.
MIN_POLL_INTERVAL: Final = 0.1
#: Leader election (:mod:`jobqueue_operator.leader`): a standby takes over 2.5-3.5 s after the
#: leader died without releasing the Lease, within 0.5 s after a clean stop. client-go's
#: defaults (15 s / 10 s / 2 s) would make that 13-17 s; renewing every 0.5 s costs the API
#: server two small writes a second, and the leader keeps a 1 s margin between giving up
#: (2 s without a renewal) and the earliest takeover (3 s).
DEFAULT_LEASE_SECONDS: Final = 3
DEFAULT_RENEW_DEADLINE_SECONDS: Final = 2.0
DEFAULT_RETRY_PERIOD_SECONDS: Final = 0.5

#: Each shard is two Leases, each renewed every retry period.
MAX_SHARDS: Final = 64

#: What a Redis URL starts with (redis-py's forms, and Sentinel's: jobqueue._redis).
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")

LogFormat = Literal["json", "plain"]
Isolation = Literal["namespace", "none"]
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
_PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the operator can be told; see the module docstring for the variables."""

    #: namespaces to serve; empty: the whole cluster
    namespaces: tuple[str, ...] = ()
    #: Redis URL of queues without ``spec.redis`` (also given to their workers)
    redis_url: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT
    health_port: int = DEFAULT_HEALTH_PORT
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    #: ``jobqueue-priority-`` gives ``jobqueue-priority-1`` … ``-5``; empty: no priorityClassName
    priority_class_prefix: str = ""
    worker_image_pull_policy: str | None = None
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    redis_timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS
    #: seconds between autoscaler passes; 0: no autoscaler
    poll_interval: float = DEFAULT_POLL_INTERVAL
    #: most worker pods of all queues together; None: unlimited
    worker_budget: int | None = None
    #: ``namespace``: one database and ACL user per namespace on the default Redis
    redis_isolation: Isolation = "none"
    #: hosts ``spec.redis`` URLs may name; empty: any (see :mod:`jobqueue_operator.redisaddresses`)
    redis_allowed_hosts: tuple[str, ...] = ()
    #: the leader Lease (name, namespace); None: no election
    leader_lease: tuple[str, str] | None = None
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    renew_deadline_seconds: float = DEFAULT_RENEW_DEADLINE_SECONDS
    retry_period_seconds: float = DEFAULT_RETRY_PERIOD_SECONDS
    #: autoscaler shards over the replicas (:mod:`jobqueue_operator.sharding`); 0: off
    shards: int = 0

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def serves(self, namespace: str) -> bool:
        return self.clusterwide or namespace in self.namespaces

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; raise :class:`~jobqueue_operator.errors.SettingsError` on a bad value."""
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(PREFIX + name, "").strip()

        level = (get("LOG_LEVEL") or "INFO").upper()
        _check(level in _LOG_LEVELS, "LOG_LEVEL", level, f"one of {', '.join(_LOG_LEVELS)}")
        fmt = (get("LOG_FORMAT") or "json").lower()
        _check(fmt in ("json", "plain"), "LOG_FORMAT", fmt, "json or plain")
        pull = get("WORKER_IMAGE_PULL_POLICY") or None
        _check(
            pull is None or pull in _PULL_POLICIES,
            "WORKER_IMAGE_PULL_POLICY",
            pull or "",
            f"one of {', '.join(_PULL_POLICIES)}",
        )
        poll = _number(get, "POLL_INTERVAL", DEFAULT_POLL_INTERVAL, float, low=0, high=60)
        _check(
            poll == 0 or poll >= MIN_POLL_INTERVAL,
            "POLL_INTERVAL",
            get("POLL_INTERVAL"),
            f"0 (no autoscaler) or at least {MIN_POLL_INTERVAL:g} seconds",
        )
        redis_url = get("REDIS_URL") or None
        _check(
            redis_url is None or redis_url.startswith(REDIS_SCHEMES),
            "REDIS_URL",
            "<hidden>",
            "a redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel:// URL",
        )
        isolation = (get("REDIS_ISOLATION") or "none").lower()
        _check(isolation in ("namespace", "none"), "REDIS_ISOLATION", isolation, "namespace or none")
        _check(
            isolation == "none" or redis_url is None or not redis_url.startswith("unix://"),
            "REDIS_ISOLATION",
            isolation,
            "none with a unix:// JOBQUEUE_REDIS_URL (pods cannot reach the operator's socket)",
        )
        allowed = tuple(h.strip() for h in get("REDIS_ALLOWED_HOSTS").split(",") if h.strip())
        for pattern in allowed:
            _check(
                hostpolicy.valid_pattern(pattern),
                "REDIS_ALLOWED_HOSTS",
                pattern,
                "host names (with * globs), host:port, or IP networks such as 10.0.0.0/8",
            )
        lease = get("LEADER_LEASE") or None
        namespace = env.get("POD_NAMESPACE", "").strip()
        _check(
            lease is None or bool(namespace),
            "LEADER_LEASE",
            lease or "",
            "a Lease name together with POD_NAMESPACE (the namespace the Lease lives in)",
        )
        timings = (
            _number(get, "LEADER_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, int, low=1, high=3600),
            _number(
                get,
                "LEADER_RENEW_DEADLINE_SECONDS",
                DEFAULT_RENEW_DEADLINE_SECONDS,
                float,
                low=0.1,
                high=3600,
            ),
            _number(
                get, "LEADER_RETRY_PERIOD_SECONDS", DEFAULT_RETRY_PERIOD_SECONDS, float, low=0.05, high=3600
            ),
        )
        if not timings[2] < timings[1] < timings[0]:
            raise errors.SettingsError(
                f"{PREFIX}LEADER_RETRY_PERIOD_SECONDS={timings[2]:g} < {PREFIX}LEADER_RENEW_DEADLINE_SECONDS="
                f"{timings[1]:g} < {PREFIX}LEADER_LEASE_SECONDS={timings[0]} does not hold: the leader "
                "must renew several times within its deadline, and give up before anyone may take over"
            )
        shards = _number(get, "SHARDS", 0, int, low=0, high=MAX_SHARDS)
        _check(
            shards == 0 or lease is not None,
            "SHARDS",
            str(shards),
            "0 without JOBQUEUE_LEADER_LEASE (the shards are Leases beside the leader's)",
        )
        _check(
            shards == 0 or not get("WORKER_BUDGET"),
            "SHARDS",
            str(shards),
            "0 with JOBQUEUE_WORKER_BUDGET set (a budget is shared out over all queues at once, "
            "which no replica sees when they are sharded)",
        )
        return cls(
            namespaces=tuple(ns.strip() for ns in get("NAMESPACES").split(",") if ns.strip()),
            redis_url=redis_url,
            metrics_port=_number(get, "METRICS_PORT", DEFAULT_METRICS_PORT, int, low=0, high=65535),
            health_port=_number(get, "HEALTH_PORT", DEFAULT_HEALTH_PORT, int, low=0, high=65535),
            log_level=level,
            log_format="json" if fmt == "json" else "plain",
            priority_class_prefix=get("PRIORITY_CLASS_PREFIX"),
            worker_image_pull_policy=pull,
            resync_seconds=_number(get, "RESYNC_SECONDS", DEFAULT_RESYNC_SECONDS, float, low=1, high=86400),
            redis_timeout_seconds=_number(
                get, "REDIS_TIMEOUT_SECONDS", DEFAULT_REDIS_TIMEOUT_SECONDS, float, low=0.1, high=60
            ),
            poll_interval=poll,
            worker_budget=(
                _number(get, "WORKER_BUDGET", 0, int, low=0, high=1_000_000) if get("WORKER_BUDGET") else None
            ),
            redis_isolation="namespace" if isolation == "namespace" else "none",
            redis_allowed_hosts=allowed,
            leader_lease=None if lease is None else (lease, namespace),
            lease_seconds=timings[0],
            renew_deadline_seconds=timings[1],
            retry_period_seconds=timings[2],
            shards=shards,
        )


def _check(ok: bool, name: str, value: str, expected: str) -> None:
    if not ok:
        raise errors.SettingsError(f"{PREFIX}{name}={value!r} is invalid: expected {expected}")


N = TypeVar("N", int, float)


def _number(get: Callable[[str], str], name: str, default: N, kind: type[N], *, low: float, high: float) -> N:
    raw = get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise errors.SettingsError(f"{PREFIX}{name}={raw!r} is invalid: expected a number") from None
    _check(low <= value <= high, name, raw, f"a number from {low:g} to {high:g}")
    return value
