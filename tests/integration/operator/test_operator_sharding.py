"""The autoscaler sharded over three operator processes (``JOBQUEUE_SHARDS``) on the real API
server and Redis: every queue is scaled by exactly one of them — the holder of its shard's
Lease — and the queues of a replica killed without a word are scaled by a survivor once its
Leases expired.

Which process scaled a queue is read from the processes' own logs ("JobQueue ns/name: 0 → 1
replicas"), who may scale it from the shard Leases. The schedule of shards over members is
random (identities carry a random suffix), so nothing here depends on which replica gets what.
tests/unit/middle/test_middle_sharding.py proves the Lease protocol under random schedules.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time

import pytest
import redis
from opkit import RunningOperator, StartOperator, apply, get, jobqueue, kubectl_json, wait_for

import devenv
import jobqueue as jq
from jobqueue_operator import sharding

pytestmark = [pytest.mark.integration, pytest.mark.k8s]

SHARDS = 12
QUEUES = 16
LEASE = "jq-leader"


def replicas(cluster: devenv.Cluster, namespace: str, name: str) -> int | None:
    body = get(cluster, "deployment", f"{name}-worker", namespace)
    return None if body is None else int(body["spec"].get("replicas") or 0)


def scalers(ops: dict[str, RunningOperator], namespace: str, name: str, change: str) -> list[str]:
    """The processes whose log says they scaled JobQueue ``name`` by ``change`` ("0 → 1")."""
    said = f"JobQueue {namespace}/{name}: {change} replicas"
    return [who for who, op in ops.items() if any(m.startswith(said) for m in messages(op))]


def messages(op: RunningOperator) -> list[str]:
    """The messages of an operator's JSON log lines."""
    out = []
    for line in op.logs().splitlines():
        with contextlib.suppress(ValueError):
            out.append(str(json.loads(line).get("message", "")))
    return out


def shard_holders(cluster: devenv.Cluster, namespace: str) -> dict[int, str]:
    """Shard → the operator process (POD_NAME) holding its Lease."""
    leases = kubectl_json(cluster, "get", "leases", "-n", namespace)["items"]
    out = {}
    for lease in leases:
        name = lease["metadata"]["name"]
        holder = (lease.get("spec") or {}).get("holderIdentity") or ""
        if name.startswith(f"{LEASE}{sharding.SHARD_INFIX}") and holder:
            out[int(name.rsplit("-", 1)[1])] = holder.split("_")[0]
    return out


def gauge(op: RunningOperator, metric: str) -> float:
    _, text = op.get("/metrics")
    line = next((ln for ln in text.splitlines() if ln.startswith(metric + " ")), f"{metric} nan")
    return float(line.split()[-1])


def test_each_queue_is_scaled_by_exactly_its_shards_holder_and_a_dead_replicas_queues_move(
    cluster: devenv.Cluster,
    namespace: str,
    redis_url: str,
    redis_conn: redis.Redis,
    start_operator: StartOperator,
) -> None:
    def start(name: str) -> RunningOperator:
        return start_operator(
            namespaces=[namespace],
            redis_url=redis_url,
            leader_lease=LEASE,
            shards=str(SHARDS),
            env={"POD_NAME": name, "POD_NAMESPACE": namespace},
        )

    ops = {name: start(name) for name in ("op-a", "op-b", "op-c")}
    wait_for(
        "three members sharing every shard",
        lambda: (
            all(gauge(op, "jobqueue_operator_shard_members") == 3 for op in ops.values())
            and sum(gauge(op, "jobqueue_operator_shards_held") for op in ops.values()) == SHARDS
            and len(shard_holders(cluster, namespace)) == SHARDS
        ),
        timeout=60,
    )

    names = [f"q{n}" for n in range(QUEUES)]
    for name in names:
        apply(cluster, jobqueue(name, namespace, concurrency=4, scaling={"minReplicas": 0, "maxReplicas": 3}))
    wait_for("every Deployment", lambda: all(replicas(cluster, namespace, n) == 0 for n in names), timeout=90)
    wait_for(
        "published settings",
        lambda: all(redis_conn.exists(f"jobqueue:settings:{namespace}.{n}") for n in names),
    )
    for name in names:
        jq.enqueue(f"{namespace}.{name}", "glec.jobs.nap", 1, connection=redis_conn)
    wait_for(
        "every queue at 1 replica",
        lambda: all(replicas(cluster, namespace, n) == 1 for n in names),
        timeout=60,
    )

    holders = shard_holders(cluster, namespace)
    owner = {name: holders[sharding.shard_of((namespace, name), SHARDS)] for name in names}
    for name in names:
        assert scalers(ops, namespace, name, "0 → 1") == [owner[name]], name
    assert len(set(owner.values())) >= 2  # (4 shards each: the queues are spread)

    # SIGKILL a replica that scaled some queues: no release, its Leases must expire first
    victim = max(set(owner.values()), key=lambda who: sum(o == who for o in owner.values()))
    moved = [name for name in names if owner[name] == victim]
    survivors = {who: op for who, op in ops.items() if who != victim}
    ops[victim].proc.send_signal(signal.SIGKILL)
    ops[victim].proc.wait(10)
    killed = time.monotonic()
    for name in names:  # a second job each: every queue wants 2 replicas now
        jq.enqueue(f"{namespace}.{name}", "glec.jobs.nap", 1, connection=redis_conn)
    wait_for(
        "the dead replica's queues scaled by a survivor",
        lambda: all(replicas(cluster, namespace, n) == 2 for n in moved),
        timeout=60,
    )
    took = time.monotonic() - killed
    print(f"the dead replica's {len(moved)} queues scaled by a survivor after {took:.1f}s")
    # every shard held by a survivor: a handover between survivors drops a shard before the
    # other takes it, so a read at one instant may find a shard held by nobody
    wait_for(
        "every shard held by a survivor",
        lambda: (
            held
            if len(held := shard_holders(cluster, namespace)) == SHARDS
            and set(held.values()) <= set(survivors)
            else None
        ),
        timeout=30,
    )
    for name in names:
        # scaled once, by one survivor: a member leaving re-deals the survivors' shards as well,
        # so the one that scaled may have handed the shard to the other a moment later (the
        # handover drops, then releases: never two holders, never two decisions)
        (scaler,) = scalers(survivors, namespace, name, "1 → 2")
        assert scaler in survivors, name
    wait_for(
        "two members left",
        lambda: all(gauge(op, "jobqueue_operator_shard_members") == 2 for op in survivors.values()),
        timeout=30,
    )
