"""Chaos scenarios on the installed product, shared by ``test_chaos_*.py`` (invariants) and
``benchmarks/chaos_*.py`` (figures):

* :func:`pod_kills` — worker pods deleted with ``--grace-period=0 --force`` at random during a
  run: for each kill, the jobs the pod held are followed until each is back in the queue,
  started elsewhere, or failed (:class:`RecoveryTracker`);
* :func:`operator_restarts` — the operator crashed (SIGKILL) and then restarted the way
  ``helm upgrade`` does, in the middle of a burst, with work and a spec change arriving while
  it is down;
* :func:`redis_outage` — Redis frozen (SIGSTOP) or stopped and restarted on the same port for
  30 s while workers run.
"""

from __future__ import annotations

import contextlib
import json
import random
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
        return [max(h.back_at for h in k.held if h.back_at is not None) - k.at
                for k in self.kills if k.held and all(h.back_at is not None for h in k.held)]

    def figures(self) -> dict[str, Any]:
        held = [h for k in self.kills for h in k.held]
        return {"jobs": self.jobs, "job_seconds": self.job_seconds, "concurrency": self.concurrency,
                "concurrency_per_pod": self.per_pod, "seconds": round(self.seconds, 2),
                "kills": len(self.kills), "kills_holding_jobs": sum(1 for k in self.kills if k.held),
                "held_jobs": len(held), "not_taken_back": sum(1 for h in held if h.back_at is None),
                "taken_back_by": dict(Counter(h.how for h in held)),
                "taken_back_seconds": distribution(self.latencies()),
                "per_kill_last_job_back_seconds": distribution(self.per_kill()),
                "lost_jobs_recovered_events": self.lost_events, "audit": self.audit.figures()}

    def report(self) -> str:
        f = self.figures()
        lat, per = f["taken_back_seconds"], f["per_kill_last_job_back_seconds"]
        a = f["audit"]
        return "\n".join([
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
        ])


def live_worker_pods(runner: podrunner.PodRunner, namespace: str, name: str) -> list[str]:
    """Pods of JobQueue ``name`` whose process runs."""
    return [p.name for p in runner.snapshot() if p.namespace == namespace
            and p.name.startswith(f"{name}-worker-") and p.state == "running" and p.pid is not None]


def kill_pod(cluster: devenv.Cluster, runner: podrunner.PodRunner, namespace: str, pod: str) -> float:
    """``kubectl delete pod --grace-period=0 --force``; returns once its process is gone, with
    the unix time the deletion was sent."""
    at = time.time()
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--grace-period=0", "--force", "--wait=false")
    devenv.wait_until(f"the process of {pod} gone", lambda: not any(
        p.name == pod and p.pid is not None for p in runner.snapshot() if p.namespace == namespace),
        timeout=30, interval=0.05)
    return at


def pod_kills(cluster: devenv.Cluster, namespace: str, conn: redis.Redis, runner: podrunner.PodRunner, *,
              name: str = "chaos", jobs: int = 5000, job_seconds: float = 0.1, concurrency: int = 20,
              per_pod: int = 2, every: tuple[float, float] = (2.0, 4.0), seed: int = 1,
              timeout: float = 600, scaling: dict[str, Any] | None = None) -> PodKills:
    """Enqueue ``jobs``; while any is still waiting, delete a random running worker pod every
    ``every`` seconds (uniform); then wait for every job to end and every held one to be back.
    ``scaling``: the queue's ``spec.scaling`` fields beyond the defaults here."""
    queue = apply_queue(cluster, conn, queue_body(
        name, namespace, concurrency=concurrency, per_pod=per_pod, attempts=5,
        **{"scaleDownDelaySeconds": 5, "idleSecondsBeforeZero": 10, **(scaling or {})}))
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
    events = kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector",
                          f"involvedObject.name={name},reason=LostJobsRecovered")["items"]
    return PodKills(jobs=jobs, job_seconds=job_seconds, concurrency=concurrency, per_pod=per_pod,
                    seconds=seconds, kills=kills, audit=audit(conn, ids), lost_events=len(events))


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
        return {"operator_live_after_crash_seconds": round(self.live_after[0], 2),
                "operator_live_after_rollout_restart_seconds": round(self.live_after[1], 2),
                "work_while_down_scaled_after_crash_seconds": round(self.latecomer_scaled_after, 2),
                "spec_change_while_down_applied_after_restart_seconds": round(self.max_applied_after, 2),
                "replicas": self.replicas, "children_per_owner": self.children,
                "audit": self.audit.figures()}

    def report(self) -> str:
        f = self.figures()
        return "\n".join([
            "operator restarted twice in a burst: crash (pod force-deleted: SIGKILL), then "
            "`kubectl rollout restart` (SIGTERM, Recreate)",
            f"  new operator live after {f['operator_live_after_crash_seconds']} s (crash), "
            f"{f['operator_live_after_rollout_restart_seconds']} s (rollout)",
            f"  work enqueued while it was down: scaled {self.latecomer_scaled_after:.2f} s after the crash",
            f"  maxReplicas lowered during the restart applied {self.max_applied_after:.2f} s after it",
            f"  replicas seen: {self.replicas}",
            f"  children per owner: {self.children}; jobs: {f['audit']}",
        ])


def operator_restarts(product: Product, conn: redis.Redis, *, jobs: int = 320,
                      job_seconds: float = 1.0) -> Restarts:
    """Queue ``steady`` (8 slots, 4 pods) gets ``jobs`` and scales up; the operator is crashed
    and queue ``latecomer`` gets 40 jobs while it is down; then, while ``steady`` still has a
    backlog, the operator is restarted gracefully and ``steady``'s maxReplicas is lowered to 3
    while it is down. Both queues must drain and go back to zero; each JobQueue and
    RecurringJob must own exactly one Deployment / CronJob."""
    cluster, namespace = product.cluster, product.namespace
    steady = apply_queue(cluster, conn, queue_body(
        "steady", namespace, concurrency=8, per_pod=2, maxReplicas=4, scaleDownDelaySeconds=3,
        idleSecondsBeforeZero=5))
    late = apply_queue(cluster, conn, queue_body(
        "latecomer", namespace, concurrency=4, per_pod=2, scaleDownDelaySeconds=3, idleSecondsBeforeZero=5))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(rjkit.recurringjob(
        "nightly", namespace, queue="steady", function=NAP, args=["nightly", 0.1])))
    rjkit.wait_ready(cluster, "nightly", namespace, status="True", reason="Scheduled")
    with ReplicaWatch(cluster, namespace, "steady-worker") as w_steady, \
            ReplicaWatch(cluster, namespace, "latecomer-worker") as w_late:
        ids = enqueue_naps(conn, steady, "steady", jobs, job_seconds)
        devenv.wait_until("steady at 4 replicas", lambda: w_steady.values[-1] == 4, timeout=60)
        devenv.wait_until("steady's jobs running", lambda: settled(conn, steady) > 0, timeout=60)

        crashed = product.restart(force=True)
        t_crash = time.time()
        ids += enqueue_naps(conn, late, "late", 40, job_seconds)
        product.wait_live(exclude=[crashed])
        live_crash = time.time() - t_crash
        devenv.wait_until("latecomer scaled up", lambda: w_late.values[-1] == 2, timeout=120)
        late_scaled = next(t for t, r in w_late.timeline if r == 2) - t_crash

        assert settled(conn, steady) < jobs - 8 * 4, "steady drained before the second restart"
        stopped = product.restart(force=False)
        t_rollout = time.time()
        rjkit.merge_patch(cluster, "jq", "steady", namespace, {"spec": {"scaling": {"maxReplicas": 3}}})
        product.wait_live(exclude=[crashed, stopped])
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
    return Restarts(live_after=(live_crash, live_rollout), latecomer_scaled_after=late_scaled,
                    max_applied_after=max_applied, replicas=history, children=children,
                    audit=audit(conn, ids))


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
        return {"how": self.how, "outage_seconds": round(self.seconds, 2),
                "redis_reachable_false_after_seconds": None if self.reported_after is None
                else round(self.reported_after, 2),
                "condition": {k: self.condition_down.get(k) for k in ("status", "reason", "message")},
                "replicas_before": self.replicas_before, "replicas_during": sorted(set(self.replicas_during)),
                "redis_reachable_true_after_seconds": round(self.reachable_after, 2),
                "jobs_flowing_after_seconds": round(self.flowing_after, 2),
                "all_jobs_ended_after_seconds": round(self.drained_after, 2),
                "worker_process_restarts": self.restarts,
                "same_worker_pods_after": sorted(self.pods_after) == sorted(self.pods_before),
                "replicas": self.history, "audit": self.audit.figures()}

    def report(self) -> str:
        f = self.figures()
        c = f["condition"]
        return "\n".join([
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
        ])


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


def redis_outage(product: Product, server: devenv.RedisServer, conn: redis.Redis, *,
                 how: Literal["pause", "stop"] = "pause", seconds: float = 30.0, jobs: int = 120,
                 job_seconds: float = 0.5) -> Outage:
    """Queue ``outage`` (4 slots, 2 pods, short scale-down delays) gets ``jobs``; once both
    pods run, Redis goes away for ``seconds``, then comes back; every job must end."""
    cluster, namespace = product.cluster, product.namespace
    name = "outage"
    queue = apply_queue(cluster, conn, queue_body(
        name, namespace, concurrency=4, per_pod=2, scaleDownDelaySeconds=2, idleSecondsBeforeZero=4))
    ids = enqueue_naps(conn, queue, name, jobs, job_seconds)
    with ReplicaWatch(cluster, namespace, f"{name}-worker") as watch:
        devenv.wait_until("2 worker pods running jobs", lambda: len(
            {w.hostname for w in _workers(conn, queue) if w.busy}) == 2, timeout=90)
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
        devenv.wait_until("a job started after the outage", lambda: _started_since(conn, ids, t_up),
                          timeout=120, interval=0.25)
        flowing = _started_since(conn, ids, t_up) - t_up
        wait_settled(conn, queue, jobs, timeout=300)
        drained = time.time() - t_up
        pods_after = _pods_since(conn, ids, t_up)
        restarts = _starts(product.runner, namespace, pods_before) - starts_before
        devenv.wait_until("back to zero", lambda: watch.values[-1] == 0, timeout=120)
        history = watch.changes()
    return Outage(how=how, seconds=down_for, reported_after=reported, condition_down=cond,
                  replicas_during=during, replicas_before=before, reachable_after=reachable_after,
                  flowing_after=flowing, drained_after=drained, pods_before=pods_before,
                  pods_after=pods_after, restarts=restarts, audit=audit(conn, ids), history=history)


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
