"""Chaos scenarios on the installed product, shared by ``test_chaos_*.py`` (invariants) and
``benchmarks/chaos_*.py`` (figures):

* :func:`pod_kills` — worker pods deleted with ``--grace-period=0 --force`` at random during a
  run: for each kill, the jobs the pod held are followed until each is back in the queue,
  started elsewhere, or failed (:class:`RecoveryTracker`);
* :func:`operator_restarts` — the operator crashed (SIGKILL) and then restarted the way
  ``helm upgrade`` does, in the middle of a burst, with work and a spec change arriving while
  it is down;
* :func:`leader_failovers` — the leader of two operator replicas killed again and again in the
  middle of a burst (its process SIGKILLed, or its pod deleted), then the chart upgraded with
  a rolling update of the operator pods while work keeps arriving;
* :func:`redis_outage` — Redis frozen (SIGSTOP) or stopped and restarted on the same port for
  30 s while workers run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from e2ekit import (
    NAP,
    Audit,
    Product,
    apply_queue,
    audit,
    distribution,
    enqueue_naps,
    owned_children,
    queue_body,
    settled,
    uids,
    wait_settled,
)
from opkit import condition, get, kubectl_json

import devenv
import podrunner
from integration.recurring import rjkit
from integration.scaling.scalekit import ReplicaWatch

# --------------------------------------------------------------------------------------
# Worker pods killed


@dataclass
class Held:
    """A job (one claim of it: ``execution``) that a pod held when it was killed."""

    job: str
    execution: str
    killed_at: float
    #: unix time it was re-queued / claimed elsewhere / failed (None: not yet)
    back_at: float | None = None
    #: "operator" (the operator saw the pod vanish), "lease" (a worker reaped the expired
    #: lease), "failed" (no attempt left)
    how: str = ""


@dataclass
class Kill:
    pod: str
    at: float
    held: list[Held]


def held_jobs(conn: redis.Redis, queue: str, pod: str, killed_at: float) -> list[Held]:
    """The claims of ``queue`` held by ``pod`` (its workers' entries in ``rq:wip``)."""
    members = [m.decode() for m in conn.zrange(f"rq:wip:{queue}", 0, -1)]
    claims = [tuple(m.rsplit(":", 1)) for m in members]
    pipe = conn.pipeline(transaction=False)
    for job, _ in claims:
        pipe.hmget(f"rq:job:{job}", "jq_pod", "jq_exec")
    out = []
    for (job, execution), (owner, current) in zip(claims, pipe.execute(), strict=True):
        if owner == pod.encode() and current == execution.encode():
            out.append(Held(job, execution, killed_at))
    return out


class RecoveryTracker:
    """Follows held claims from a thread (every 0.1 s, one pipeline) until each is taken back.

    A claim is taken back when its job's ``jq_exec`` no longer names it (re-queued: cleared;
    claimed again: another execution) or the job failed. The time is the job's own record of
    it — ``jq_ready`` for a re-queue, ``jq_end`` for a failure — so the poll interval does not
    add to it; the time the poll saw it is the fallback.
    """

    def __init__(self, conn: redis.Redis) -> None:
        self._conn = conn
        self._pending: list[Held] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RecoveryTracker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def add(self, held: list[Held]) -> None:
        with self._lock:
            self._pending.extend(held)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                pending = list(self._pending)
            if not pending:
                continue
            pipe = self._conn.pipeline(transaction=False)
            for h in pending:
                pipe.hmget(f"rq:job:{h.job}", "jq_exec", "status", "jq_ready", "jq_end", "jq_reason")
            try:
                replies = pipe.execute()
            except redis.RedisError:
                continue
            seen = time.time()
            done = set()
            for h, (execution, status, ready, end, reason) in zip(pending, replies, strict=True):
                if execution == h.execution.encode() and status != b"failed":
                    continue
                why = (reason or b"").decode(errors="replace")
                if status == b"failed":
                    h.how, at = "failed", float(end or seen)
                else:
                    h.how = "operator" if why.startswith("lost: worker pod ") else "lease"
                    at = float(ready or 0)
                h.back_at = at if h.killed_at <= at <= seen else seen
                done.add(id(h))
            with self._lock:
                self._pending = [h for h in self._pending if id(h) not in done]


@dataclass
class PodKills:
    jobs: int
    job_seconds: float
    concurrency: int
    per_pod: int
    seconds: float
    kills: list[Kill]
    audit: Audit
    lost_events: int

    def latencies(self) -> list[float]:
        """Seconds from each kill to each of its held jobs being taken back."""
        return [h.back_at - h.killed_at for k in self.kills for h in k.held if h.back_at is not None]

    def per_kill(self) -> list[float]:
        """Seconds from each kill until the last of its held jobs was taken back."""
        return [
            max(h.back_at for h in k.held if h.back_at is not None) - k.at
            for k in self.kills
            if k.held and all(h.back_at is not None for h in k.held)
        ]

    def figures(self) -> dict[str, Any]:
        held = [h for k in self.kills for h in k.held]
        return {
            "jobs": self.jobs,
            "job_seconds": self.job_seconds,
            "concurrency": self.concurrency,
            "concurrency_per_pod": self.per_pod,
            "seconds": round(self.seconds, 2),
            "kills": len(self.kills),
            "kills_holding_jobs": sum(1 for k in self.kills if k.held),
            "held_jobs": len(held),
            "not_taken_back": sum(1 for h in held if h.back_at is None),
            "taken_back_by": dict(Counter(h.how for h in held)),
            "taken_back_seconds": distribution(self.latencies()),
            "per_kill_last_job_back_seconds": distribution(self.per_kill()),
            "lost_jobs_recovered_events": self.lost_events,
            "audit": self.audit.figures(),
        }

    def report(self) -> str:
        f = self.figures()
        lat, per = f["taken_back_seconds"], f["per_kill_last_job_back_seconds"]
        a = f["audit"]
        return "\n".join(
            [
                f"{self.jobs:,} jobs of {self.job_seconds * 1000:g} ms, concurrency {self.concurrency} "
                f"({self.per_pod} per pod): {f['kills']} worker pods deleted with grace period 0 "
                f"({f['kills_holding_jobs']} holding jobs); all jobs ended after {self.seconds:.1f} s",
                f"  jobs held by killed pods: {f['held_jobs']}; taken back by {f['taken_back_by']}; "
                f"not taken back: {f['not_taken_back']}",
                f"  kill -> job back in the queue / started elsewhere / failed: p50 {lat.get('p50')} s, "
                f"p99 {lat.get('p99')} s, max {lat.get('max')} s (goal p99 <= 30 s)",
                f"  per kill, until its last job was back: p50 {per.get('p50')} s, max {per.get('max')} s",
                f"  jobs: {a['statuses']}; started more than once {a['started_more_than_once']}, "
                f"completed more than once {a['completed_more_than_once']}, result recorded more than "
                f"once {a['results_recorded_more_than_once']}; LostJobsRecovered events {self.lost_events}",
            ]
        )


def worker_pods_alive(runner: podrunner.PodRunner, namespace: str, name: str) -> list[str]:
    """Pods of JobQueue ``name`` whose process has not ended, stopping ones included: a pod
    stopped in the moment its container started may not have seen its SIGTERM (the kernel
    drops signals PID 1 has no handler for yet) and works on until the SIGKILL."""
    return [
        p.name
        for p in runner.snapshot()
        if p.namespace == namespace
        and p.name.startswith(f"{name}-worker-")
        and p.state in ("running", "stopping")
    ]


def live_worker_pods(runner: podrunner.PodRunner, namespace: str, name: str) -> list[str]:
    """Pods of JobQueue ``name`` whose process runs."""
    return [
        p.name
        for p in runner.snapshot()
        if p.namespace == namespace
        and p.name.startswith(f"{name}-worker-")
        and p.state == "running"
        and p.pid is not None
    ]


def kill_pod(cluster: devenv.Cluster, runner: podrunner.PodRunner, namespace: str, pod: str) -> float:
    """``kubectl delete pod --grace-period=0 --force``; returns once its process is gone, with
    the unix time the deletion was sent."""
    at = time.time()
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--grace-period=0", "--force", "--wait=false")
    devenv.wait_until(
        f"the process of {pod} gone",
        lambda: (
            not any(
                p.name == pod and p.pid is not None for p in runner.snapshot() if p.namespace == namespace
            )
        ),
        timeout=30,
        interval=0.05,
    )
    return at


def pod_kills(
    cluster: devenv.Cluster,
    namespace: str,
    conn: redis.Redis,
    runner: podrunner.PodRunner,
    *,
    name: str = "chaos",
    jobs: int = 5000,
    job_seconds: float = 0.1,
    concurrency: int = 20,
    per_pod: int = 2,
    every: tuple[float, float] = (2.0, 4.0),
    seed: int = 1,
    timeout: float = 600,
    scaling: dict[str, Any] | None = None,
) -> PodKills:
    """Enqueue ``jobs``; while any is still waiting, delete a random running worker pod every
    ``every`` seconds (uniform); then wait for every job to end and every held one to be back.
    ``scaling``: the queue's ``spec.scaling`` fields beyond the defaults here."""
    queue = apply_queue(
        cluster,
        conn,
        queue_body(
            name,
            namespace,
            concurrency=concurrency,
            per_pod=per_pod,
            attempts=5,
            **{"scaleDownDelaySeconds": 5, "idleSecondsBeforeZero": 10, **(scaling or {})},
        ),
    )
    rnd = random.Random(seed)
    kills: list[Kill] = []
    t0 = time.time()
    ids = enqueue_naps(conn, queue, name, jobs, job_seconds)
    with RecoveryTracker(conn) as tracker:
        while conn.llen(f"rq:queue:{queue}") > 0 and time.time() - t0 < timeout:
            time.sleep(rnd.uniform(*every))
            pods = live_worker_pods(runner, namespace, name)
            if not pods:
                continue
            pod = rnd.choice(sorted(pods))
            at = kill_pod(cluster, runner, namespace, pod)
            held = held_jobs(conn, queue, pod, at)
            tracker.add(held)
            kills.append(Kill(pod, at, held))
        wait_settled(conn, queue, jobs, timeout=timeout)
        seconds = time.time() - t0
        devenv.wait_until("every held job taken back", lambda: tracker.pending() == 0, timeout=120)
    events = kubectl_json(
        cluster,
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},reason=LostJobsRecovered",
    )["items"]
    return PodKills(
        jobs=jobs,
        job_seconds=job_seconds,
        concurrency=concurrency,
        per_pod=per_pod,
        seconds=seconds,
        kills=kills,
        audit=audit(conn, ids),
        lost_events=len(events),
    )


# --------------------------------------------------------------------------------------
# The operator restarted


@dataclass
class Restarts:
    #: seconds from each restart to the new operator answering /healthz: (crash, rollout)
    live_after: tuple[float, float]
    #: seconds from the crash to the scale-up of the queue that got work while it was down
    latecomer_scaled_after: float
    #: seconds from the rollout restart to the maxReplicas lowered meanwhile being applied
    max_applied_after: float
    #: replicas of each queue as the watch saw them
    replicas: dict[str, list[int]]
    #: kind -> number of children of each owner (uid); the owners with none are counted 0
    children: dict[str, list[int]]
    audit: Audit

    def figures(self) -> dict[str, Any]:
        return {
            "operator_live_after_crash_seconds": round(self.live_after[0], 2),
            "operator_live_after_rollout_restart_seconds": round(self.live_after[1], 2),
            "work_while_down_scaled_after_crash_seconds": round(self.latecomer_scaled_after, 2),
            "spec_change_while_down_applied_after_restart_seconds": round(self.max_applied_after, 2),
            "replicas": self.replicas,
            "children_per_owner": self.children,
            "audit": self.audit.figures(),
        }

    def report(self) -> str:
        f = self.figures()
        return "\n".join(
            [
                "operator restarted twice in a burst: crash (pod force-deleted: SIGKILL), then "
                "`kubectl rollout restart` (SIGTERM)",
                f"  new operator live after {f['operator_live_after_crash_seconds']} s (crash), "
                f"{f['operator_live_after_rollout_restart_seconds']} s (rollout)",
                f"  work enqueued while it was down: scaled {self.latecomer_scaled_after:.2f} s after the crash",
                f"  maxReplicas lowered during the restart applied {self.max_applied_after:.2f} s after it",
                f"  replicas seen: {self.replicas}",
                f"  children per owner: {self.children}; jobs: {f['audit']}",
            ]
        )


def operator_restarts(
    product: Product, conn: redis.Redis, *, jobs: int = 320, job_seconds: float = 1.0
) -> Restarts:
    """Queue ``steady`` (8 slots, 4 pods) gets ``jobs`` and scales up; the operator is crashed
    and queue ``latecomer`` gets 40 jobs while it is down; then, while ``steady`` still has a
    backlog, the operator is restarted gracefully and ``steady``'s maxReplicas is lowered to 3
    while it is down. Both queues must drain and go back to zero; each JobQueue and
    RecurringJob must own exactly one Deployment / CronJob."""
    cluster, namespace = product.cluster, product.namespace
    steady = apply_queue(
        cluster,
        conn,
        queue_body(
            "steady",
            namespace,
            concurrency=8,
            per_pod=2,
            maxReplicas=4,
            scaleDownDelaySeconds=3,
            idleSecondsBeforeZero=5,
        ),
    )
    late = apply_queue(
        cluster,
        conn,
        queue_body(
            "latecomer", namespace, concurrency=4, per_pod=2, scaleDownDelaySeconds=3, idleSecondsBeforeZero=5
        ),
    )
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            rjkit.recurringjob("nightly", namespace, queue="steady", function=NAP, args=["nightly", 0.1])
        ),
    )
    rjkit.wait_ready(cluster, "nightly", namespace, status="True", reason="Scheduled")
    with (
        ReplicaWatch(cluster, namespace, "steady-worker") as w_steady,
        ReplicaWatch(cluster, namespace, "latecomer-worker") as w_late,
    ):
        ids = enqueue_naps(conn, steady, "steady", jobs, job_seconds)
        devenv.wait_until("steady at 4 replicas", lambda: w_steady.values[-1] == 4, timeout=60)
        devenv.wait_until("steady's jobs running", lambda: settled(conn, steady) > 0, timeout=60)

        crashed = product.restart(force=True)
        t_crash = time.time()
        ids += enqueue_naps(conn, late, "late", 40, job_seconds)
        product.wait_live(exclude=crashed)
        live_crash = time.time() - t_crash
        devenv.wait_until("latecomer scaled up", lambda: w_late.values[-1] == 2, timeout=120)
        late_scaled = next(t for t, r in w_late.timeline if r == 2) - t_crash

        assert settled(conn, steady) < jobs - 8 * 4, "steady drained before the second restart"
        stopped = product.restart(force=False)
        t_rollout = time.time()
        rjkit.merge_patch(cluster, "jq", "steady", namespace, {"spec": {"scaling": {"maxReplicas": 3}}})
        product.wait_live(exclude=[*crashed, *stopped])
        live_rollout = time.time() - t_rollout
        devenv.wait_until("steady at its new maxReplicas", lambda: w_steady.values[-1] == 3, timeout=120)
        max_applied = next(t for t, r in w_steady.timeline if t > t_rollout and r == 3) - t_rollout
        wait_settled(conn, steady, jobs, timeout=300)
        wait_settled(conn, late, 40, timeout=120)
        for queue, watch in (("steady", w_steady), ("latecomer", w_late)):
            devenv.wait_until(f"{queue} back to zero", lambda w=watch: w.values[-1] == 0, timeout=120)
        history = {"steady": w_steady.changes(), "latecomer": w_late.changes()}
    children = {}
    for kind, owner_kind in (("deployments", "jobqueues"), ("cronjobs", "recurringjobs")):
        owned = owned_children(cluster, namespace, kind)
        children[kind] = [len(owned.get(uid, [])) for uid in uids(cluster, namespace, owner_kind).values()]
    return Restarts(
        live_after=(live_crash, live_rollout),
        latecomer_scaled_after=late_scaled,
        max_applied_after=max_applied,
        replicas=history,
        children=children,
        audit=audit(conn, ids),
    )


# --------------------------------------------------------------------------------------
# The leader killed


KillHow = Literal["sigkill", "delete"]


@dataclass
class Failover:
    """One kill of the leader."""

    how: KillHow
    killed: str
    #: unix time of the kill
    at: float
    #: the pod running the operator afterwards, and seconds from the kill until it did
    successor: str
    live_after: float
    #: seconds from the kill to the replicas written for work that arrived with the kill
    scaled_after: float


@dataclass
class Failovers:
    runs: list[Failover]
    #: the rolling upgrade: seconds `helm upgrade --wait` took, the Lease holders it went
    #: through, and the seconds from its start to the scale-up of work that arrived meanwhile
    upgrade_seconds: float | None
    upgrade_leaders: list[str]
    upgrade_scaled_after: float | None
    #: replica changes (before, after) the watch saw, per queue
    transitions: dict[str, list[tuple[int, int]]]
    #: scale Events (before, after) per queue, and by which operator pod (reportingInstance)
    events: dict[str, list[tuple[int, int]]]
    scalers: dict[str, int]
    children: dict[str, list[int]]
    audit: Audit
    #: replica watches that broke and were resumed, and spec changes they may have missed
    #: (:class:`ReplicaWatch`): with a gap, an unmatched Event may be a change not seen
    watch_restarts: int = 0
    watch_gaps: int = 0

    @property
    def unseen_changes(self) -> dict[str, list[tuple[int, int, int]]]:
        """Per queue, the replica changes (before, after, how many) with no scale Event: a
        change the operator made without saying so, or two changes the watch saw as one."""
        out = {
            q: [
                (before, after, n)
                for (before, after), n in sorted(
                    (Counter(self.transitions[q]) - Counter(self.events[q])).items()
                )
            ]
            for q in self.transitions
        }
        return {q: rows for q, rows in out.items() if rows}

    @property
    def unmatched_events(self) -> dict[str, list[tuple[int, int, int]]]:
        """Per queue, the scale Events (before, after, how many) beyond the replica changes the
        watch saw: a change written twice (two replicas acting on one decision), or a write
        that changed nothing."""
        out = {
            q: [
                (before, after, n)
                for (before, after), n in sorted(
                    (Counter(self.events[q]) - Counter(self.transitions[q])).items()
                )
            ]
            for q in self.events
        }
        return {q: rows for q, rows in out.items() if rows}

    @property
    def decided_twice(self) -> int:
        return sum(n for rows in self.unmatched_events.values() for *_, n in rows)

    def latencies(self, how: KillHow, what: Literal["live", "scaled"]) -> list[float]:
        return [r.live_after if what == "live" else r.scaled_after for r in self.runs if r.how == how]

    def figures(self) -> dict[str, Any]:
        by_how = {
            how: {
                "runs": len(self.latencies(how, "live")),
                "operator_live_seconds": distribution(self.latencies(how, "live")),
                "scaling_resumed_seconds": distribution(self.latencies(how, "scaled")),
            }
            for how in ("sigkill", "delete")
            if self.latencies(how, "live")
        }
        return {
            "kills": by_how,
            "rolling_upgrade": None
            if self.upgrade_seconds is None
            else {
                "helm_upgrade_seconds": round(self.upgrade_seconds, 2),
                "leaders": self.upgrade_leaders,
                "work_scaled_after_seconds": None
                if self.upgrade_scaled_after is None
                else round(self.upgrade_scaled_after, 2),
            },
            "replica_changes": sum(len(t) for t in self.transitions.values()),
            "scale_events": sum(len(e) for e in self.events.values()),
            "scale_events_by_pod": self.scalers,
            "decided_twice": self.decided_twice,
            "unmatched_scale_events": self.unmatched_events,
            "replica_changes_without_event": self.unseen_changes,
            "replica_watch": {"restarts": self.watch_restarts, "gaps": self.watch_gaps},
            "children_per_owner": self.children,
            "audit": self.audit.figures(),
        }

    def report(self) -> str:
        f = self.figures()
        lines = []
        for how, figs in f["kills"].items():
            live, scaled = figs["operator_live_seconds"], figs["scaling_resumed_seconds"]
            what = "process SIGKILLed" if how == "sigkill" else "pod deleted (SIGTERM)"
            lines.append(
                f"leader {what}, {figs['runs']} runs: next operator running after p50 "
                f"{live['p50']} s / p99 {live['p99']} s; work that came with the kill scaled after "
                f"p50 {scaled['p50']} s / p99 {scaled['p99']} s (max {scaled['max']} s)"
            )
        if f["rolling_upgrade"]:
            u = f["rolling_upgrade"]
            lines.append(
                f"rolling upgrade during the burst: helm upgrade --wait "
                f"{u['helm_upgrade_seconds']} s, Lease holders {u['leaders']}; work arriving "
                f"meanwhile scaled after {u['work_scaled_after_seconds']} s"
            )
        lines.append(
            f"replica changes {f['replica_changes']}, scale Events {f['scale_events']} "
            f"(by pod {f['scale_events_by_pod']}), decided twice: {f['decided_twice']}"
            + (f" {f['unmatched_scale_events']}" if f["unmatched_scale_events"] else "")
            + (
                f"; replica changes without an Event {f['replica_changes_without_event']}"
                if f["replica_changes_without_event"]
                else ""
            )
            + f"; replica watch {f['replica_watch']}"
        )
        lines.append(f"children per owner {f['children_per_owner']}; jobs: {f['audit']}")
        return "\n".join(lines)


class LeaseWatch:
    """The holders of the leader Lease in turn (a thread reading it every 0.1 s, through the
    product's API client)."""

    def __init__(self, product: Product) -> None:
        self._product = product
        self.holders: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):  # (an API hiccup: read again next time)
                who = self._product.holder()
                if who and (not self.holders or self.holders[-1] != who):
                    self.holders.append(who)


def kill_operator(product: Product, pod: str, how: KillHow) -> float:
    """SIGKILL the operator process of ``pod`` (a crash: its container restarts, after the pod
    runner's back-off) or delete the pod (SIGTERM and its grace period, as a drain or a scale
    in does); the unix time it was done."""
    at = time.time()
    if how == "sigkill":
        info = product.operator_process(pod)
        assert info is not None, f"no running process for {pod}"
        assert info.pid is not None
        os.killpg(info.pid, signal.SIGKILL)
    else:
        product.cluster.kubectl("delete", "pod", pod, "-n", product.namespace, "--wait=false")
    return at


def _first_up_after(watch: ReplicaWatch, since: float) -> float | None:
    return next((t - since for t, r in watch.timeline if t >= since and r > 0), None)


def leader_failovers(
    product: Product,
    conn: redis.Redis,
    *,
    kills: tuple[tuple[KillHow, int], ...] = (("sigkill", 10), ("delete", 10)),
    upgrade: bool = True,
    fresh_jobs: int = 8,
) -> Failovers:
    """Queue ``steady`` (4 slots, 2 pods) runs a burst of one-second jobs throughout. For each
    kill: once a leader and (with leader election) a standby are up, the leader is killed and
    queue ``fresh`` (at zero) gets ``fresh_jobs`` jobs at once, which only a running operator
    can scale for; measured: kill → the next operator running, kill → ``fresh`` scaled (a
    SIGKILLed pod is deleted afterwards, so that the next run has a fresh standby). Then
    (``upgrade``) the chart is upgraded with a value that rolls the operator pods while
    ``fresh`` gets work. Every job must run once, and every scale Event must match a replica
    change the watch saw (no decision carried out twice)."""
    cluster, namespace = product.cluster, product.namespace
    total_runs = sum(n for _, n in kills) + (2 if upgrade else 0)
    steady = apply_queue(
        cluster,
        conn,
        queue_body(
            "steady",
            namespace,
            concurrency=4,
            per_pod=2,
            maxReplicas=2,
            scaleDownDelaySeconds=3,
            idleSecondsBeforeZero=5,
        ),
    )
    fresh = apply_queue(
        cluster,
        conn,
        queue_body(
            "fresh", namespace, concurrency=4, per_pod=2, scaleDownDelaySeconds=1, idleSecondsBeforeZero=2
        ),
    )
    runs: list[Failover] = []
    ids: dict[str, list[str]] = {steady: [], fresh: []}
    upgrade_leaders: list[str] = []
    upgrade_seconds: float | None = None
    upgrade_scaled: float | None = None
    with (
        ReplicaWatch(cluster, namespace, "steady-worker") as w_steady,
        ReplicaWatch(cluster, namespace, "fresh-worker") as w_fresh,
        LeaseWatch(product) as lease,
    ):
        # enough one-second jobs to keep 4 slots busy for about 15 s a run
        ids[steady] += enqueue_naps(conn, steady, "steady", 60 * total_runs, 1.0)
        devenv.wait_until("steady at 2 replicas", lambda: w_steady.values[-1] == 2, timeout=60)
        n = 0
        for how, count in kills:
            for _ in range(count):
                # at zero and its last pod gone: a worker still running would take the jobs that
                # come with the kill, and there would be nothing to scale for
                devenv.wait_until(
                    "fresh at zero",
                    lambda: (
                        w_fresh.values[-1] == 0 and not worker_pods_alive(product.runner, namespace, "fresh")
                    ),
                    timeout=180,
                )
                leader = product.wait_live()
                if product.elected:
                    product.wait_standby(exclude=[leader])
                at = kill_operator(product, leader, how)
                ids[fresh] += enqueue_naps(conn, fresh, f"fresh{n:03d}", fresh_jobs, 0.2)
                successor = product.wait_live(exclude=[leader] if product.elected else [])
                live = time.time() - at
                devenv.wait_until(
                    "fresh scaled up",
                    lambda t=at: _first_up_after(w_fresh, t) is not None,
                    timeout=120,
                    interval=0.05,
                )
                runs.append(Failover(how, leader, at, successor, live, _first_up_after(w_fresh, at) or 0.0))
                n += 1
                if how == "sigkill":
                    # every run starts afresh: a pod whose container is killed again and again is
                    # restarted later and later (the kubelet's back-off, and the pod runner's)
                    cluster.kubectl("delete", "pod", leader, "-n", namespace, "--wait=false")
        if upgrade:
            devenv.wait_until(
                "fresh at zero",
                lambda: w_fresh.values[-1] == 0 and not worker_pods_alive(product.runner, namespace, "fresh"),
                timeout=180,
            )
            product.wait_live()
            before = len(lease.holders)
            done = threading.Event()

            def roll() -> None:
                try:
                    product.upgrade({"podAnnotations": {"jobqueue.test/rolled": str(time.time())}})
                finally:
                    done.set()

            started = time.time()
            roller = threading.Thread(target=roll, daemon=True)
            roller.start()
            time.sleep(1.0)  # the new pods are starting: work arrives in the middle of the rollout
            ids[fresh] += enqueue_naps(conn, fresh, "fresh-upgrade", fresh_jobs * 4, 0.5)
            arrived = time.time()
            roller.join(300)
            assert done.is_set(), "helm upgrade did not return"
            upgrade_seconds = time.time() - started
            devenv.wait_until(
                "fresh scaled up",
                lambda: _first_up_after(w_fresh, arrived) is not None,
                timeout=120,
                interval=0.05,
            )
            upgrade_scaled = _first_up_after(w_fresh, arrived)
            leading = product.wait_live()
            # (the Lease watch reads every 0.1 s: it may not have seen the holder wait_live saw)
            devenv.wait_until(
                "the Lease watch at the holder", lambda: lease.holders[-1:] == [leading], timeout=10
            )
            upgrade_leaders = lease.holders[max(0, before - 1) :]
        for queue, queued in ids.items():
            wait_settled(conn, queue, len(queued), timeout=600)
        for name, watch in (("steady", w_steady), ("fresh", w_fresh)):
            devenv.wait_until(f"{name} back to zero", lambda w=watch: w.values[-1] == 0, timeout=180)
        transitions = {
            q: list(itertools.pairwise(w.changes())) for q, w in (("steady", w_steady), ("fresh", w_fresh))
        }
        watch_restarts, watch_gaps = w_steady.restarts + w_fresh.restarts, w_steady.gaps + w_fresh.gaps
    events: dict[str, list[tuple[int, int]]] = {"steady": [], "fresh": []}
    scalers: Counter[str] = Counter()
    for e in kubectl_json(cluster, "get", "events", "-n", namespace)["items"]:
        name = e["involvedObject"]["name"]
        if e["reason"] in ("ScaledUp", "ScaledDown") and name in events:
            before, after = e["message"].split(":", 1)[0].removeprefix("worker replicas ").split(" → ")
            events[name].append((int(before), int(after)))
            scalers[e.get("reportingInstance") or "?"] += 1
    children = {}
    for kind, owner_kind in (("deployments", "jobqueues"),):
        owned = owned_children(cluster, namespace, kind)
        children[kind] = [len(owned.get(uid, [])) for uid in uids(cluster, namespace, owner_kind).values()]
    return Failovers(
        runs=runs,
        upgrade_seconds=upgrade_seconds,
        upgrade_leaders=upgrade_leaders,
        upgrade_scaled_after=upgrade_scaled,
        transitions=transitions,
        events=events,
        scalers=dict(scalers),
        children=children,
        audit=audit(conn, [*ids[steady], *ids[fresh]]),
        watch_restarts=watch_restarts,
        watch_gaps=watch_gaps,
    )


# --------------------------------------------------------------------------------------
# Redis down


@dataclass
class Outage:
    how: str
    seconds: float
    #: seconds from the outage's start to RedisReachable=False (None: never seen)
    reported_after: float | None
    condition_down: dict[str, Any]
    #: replicas seen while Redis was down (before it came back)
    replicas_during: list[int]
    replicas_before: int
    #: seconds from Redis' return to RedisReachable=True / the first job started again /
    #: every job ended
    reachable_after: float
    flowing_after: float
    drained_after: float
    #: worker pods before the outage, and those that ran the jobs started after it
    pods_before: list[str]
    pods_after: list[str]
    restarts: int
    audit: Audit
    history: list[int] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "how": self.how,
            "outage_seconds": round(self.seconds, 2),
            "redis_reachable_false_after_seconds": None
            if self.reported_after is None
            else round(self.reported_after, 2),
            "condition": {k: self.condition_down.get(k) for k in ("status", "reason", "message")},
            "replicas_before": self.replicas_before,
            "replicas_during": sorted(set(self.replicas_during)),
            "redis_reachable_true_after_seconds": round(self.reachable_after, 2),
            "jobs_flowing_after_seconds": round(self.flowing_after, 2),
            "all_jobs_ended_after_seconds": round(self.drained_after, 2),
            "worker_process_restarts": self.restarts,
            "same_worker_pods_after": sorted(self.pods_after) == sorted(self.pods_before),
            "replicas": self.history,
            "audit": self.audit.figures(),
        }

    def report(self) -> str:
        f = self.figures()
        c = f["condition"]
        return "\n".join(
            [
                f"Redis {'frozen (SIGSTOP)' if self.how == 'pause' else 'stopped and restarted on its port'} "
                f"for {self.seconds:.0f} s while {self.replicas_before} worker pods ran jobs",
                f"  RedisReachable=False after {f['redis_reachable_false_after_seconds']} s: "
                f"reason {c['reason']!r}, message {c['message']!r}",
                f"  replicas while down: {f['replicas_during']} (before: {self.replicas_before})",
                f"  after Redis returned: RedisReachable=True in {f['redis_reachable_true_after_seconds']} s, "
                f"jobs flowing in {f['jobs_flowing_after_seconds']} s, all ended in "
                f"{f['all_jobs_ended_after_seconds']} s; worker restarts {self.restarts}, "
                f"same pods: {f['same_worker_pods_after']}",
                f"  jobs: {f['audit']}",
            ]
        )


def stop_redis(server: devenv.RedisServer) -> None:
    """Stop Redis as an operator of it would for maintenance: save (RDB), then exit."""
    conn = redis.Redis(port=server.port)
    with contextlib.suppress(redis.ConnectionError):  # the server closes it as it exits
        conn.shutdown(save=True)
    assert server.proc is not None
    server.proc.wait(30)


def start_redis(server: devenv.RedisServer) -> None:
    """Start Redis again on the same port and directory (it loads the RDB file saved by
    :func:`stop_redis`); ``server`` holds the new process afterwards."""
    again = devenv.RedisServer(port=server.port, workdir=server.workdir).start()
    server.proc = again.proc


def redis_outage(
    product: Product,
    server: devenv.RedisServer,
    conn: redis.Redis,
    *,
    how: Literal["pause", "stop"] = "pause",
    seconds: float = 30.0,
    jobs: int = 120,
    job_seconds: float = 0.5,
) -> Outage:
    """Queue ``outage`` (4 slots, 2 pods, short scale-down delays) gets ``jobs``; once both
    pods run, Redis goes away for ``seconds``, then comes back; every job must end."""
    cluster, namespace = product.cluster, product.namespace
    name = "outage"
    queue = apply_queue(
        cluster,
        conn,
        queue_body(
            name, namespace, concurrency=4, per_pod=2, scaleDownDelaySeconds=2, idleSecondsBeforeZero=4
        ),
    )
    ids = enqueue_naps(conn, queue, name, jobs, job_seconds)
    with ReplicaWatch(cluster, namespace, f"{name}-worker") as watch:
        devenv.wait_until(
            "2 worker pods running jobs",
            lambda: len({w.hostname for w in _workers(conn, queue) if w.busy}) == 2,
            timeout=90,
        )
        before = watch.values[-1]
        pods_before = sorted(live_worker_pods(product.runner, namespace, name))
        starts_before = _starts(product.runner, namespace, pods_before)
        t_down = time.time()
        if how == "pause":
            server.pause()
        else:
            stop_redis(server)
        reported: float | None = None
        cond: dict[str, Any] = {}
        during: list[int] = []
        try:
            while time.time() - t_down < seconds:
                during.append(watch.values[-1])
                if reported is None:
                    cond = condition(get(cluster, "jobqueue", name, namespace), "RedisReachable")
                    if cond.get("status") == "False":
                        reported = time.time() - t_down
                time.sleep(0.25)
        finally:
            if how == "pause":
                server.resume()
            else:
                start_redis(server)
        t_up = time.time()
        down_for = t_up - t_down

        def reachable() -> bool:
            body = get(cluster, "jobqueue", name, namespace)
            return condition(body, "RedisReachable").get("status") == "True"

        devenv.wait_until("RedisReachable=True", reachable, timeout=120, interval=0.25)
        reachable_after = time.time() - t_up
        devenv.wait_until(
            "a job started after the outage",
            lambda: _started_since(conn, ids, t_up),
            timeout=120,
            interval=0.25,
        )
        flowing = _started_since(conn, ids, t_up) - t_up
        wait_settled(conn, queue, jobs, timeout=300)
        drained = time.time() - t_up
        pods_after = _pods_since(conn, ids, t_up)
        restarts = _starts(product.runner, namespace, pods_before) - starts_before
        devenv.wait_until("back to zero", lambda: watch.values[-1] == 0, timeout=120)
        history = watch.changes()
    return Outage(
        how=how,
        seconds=down_for,
        reported_after=reported,
        condition_down=cond,
        replicas_during=during,
        replicas_before=before,
        reachable_after=reachable_after,
        flowing_after=flowing,
        drained_after=drained,
        pods_before=pods_before,
        pods_after=pods_after,
        restarts=restarts,
        audit=audit(conn, ids),
        history=history,
    )


@dataclass(frozen=True)
class _Worker:
    hostname: str
    busy: bool


def _workers(conn: redis.Redis, queue: str) -> list[_Worker]:
    """The live RQ worker records of ``queue``."""
    out = []
    for key in conn.smembers(f"rq:workers:{queue}"):
        host, state = conn.hmget(key.decode(), "hostname", "state")
        if host and state in (b"busy", b"idle"):
            out.append(_Worker(host.decode(), state == b"busy"))
    return out


def _starts(runner: podrunner.PodRunner, namespace: str, pods: list[str]) -> int:
    return sum(p.starts for p in runner.snapshot() if p.namespace == namespace and p.name in pods)


def _pods_since(conn: redis.Redis, ids: list[str], since: float) -> list[str]:
    """The pods that ran the jobs started after ``since``."""
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", "jq_start", "jq_pod")
    return sorted({p.decode() for s, p in pipe.execute() if s and p and float(s) > since})


def _started_since(conn: redis.Redis, ids: list[str], since: float) -> float:
    """The earliest start after ``since`` of any of the jobs (0: none)."""
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"rq:job:{job_id}", "jq_start")
    starts = [float(s) for s in pipe.execute() if s and float(s) > since]
    return min(starts, default=0.0)
