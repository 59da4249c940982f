"""Leader election on a real Lease: the elector against the real API server, and operator
processes that stand by, take over and hand over.

Asserted: one holder at a time; a holder that stops cleanly hands over to a standby at its
next look; a holder that dies without a word is taken over only once its Lease has expired
by the candidate's own clock; a holder that missed its renewals stops leading; of two
operator processes only the holder runs kopf (the other answers ``/healthz`` as a standby
and its metrics say so); after SIGTERM or SIGKILL of the leader the standby reconciles; a
leader frozen past its Lease exits when it wakes up.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
from opkit import RunningOperator, StartOperator, apply, get, jobqueue, wait_for

import devenv
from jobqueue_operator import k8s, leader

pytestmark = [pytest.mark.integration, pytest.mark.k8s]

FAST = leader.Timing(lease_seconds=2, renew_deadline=1.5, retry_period=0.2)


def elector(kube: k8s.Kube, namespace: str, identity: str) -> leader.Elector:
    return leader.Elector(kube, namespace=namespace, name="election", identity=identity, timing=FAST)


async def test_one_holder_at_a_time_and_a_clean_stop_hands_over(kube: k8s.Kube, namespace: str) -> None:
    a, b = elector(kube, namespace, "a"), elector(kube, namespace, "b")
    await a.acquire()
    holding = asyncio.create_task(a.hold())
    candidate = asyncio.create_task(b.acquire())
    # three lease durations of renewals: the candidate sees a live holder throughout
    for _ in range(30):
        await asyncio.sleep(FAST.lease_seconds * 3 / 30)
        assert a.leading
        assert not b.leading
        assert not candidate.done()
        assert b.holder in ("", "a")
    lease = await kube.get_lease(namespace, "election")
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseDurationSeconds"]) == ("a", 2)
    assert lease["spec"]["leaseTransitions"] == 0

    holding.cancel()
    await a.release()
    await asyncio.wait_for(candidate, 30)
    assert b.leading
    assert not a.leading
    lease = await kube.get_lease(namespace, "election")
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("b", 1)


async def test_a_silent_holder_is_taken_over_only_after_its_lease_expired(
    kube: k8s.Kube, namespace: str
) -> None:
    a, b = elector(kube, namespace, "a"), elector(kube, namespace, "b")
    await a.acquire()
    holding = asyncio.create_task(a.hold())
    await asyncio.sleep(FAST.retry_period * 3)  # a few renewals
    # "a" freezes (SIGSTOP, a long GC pause, a partition): it neither renews nor releases
    holding.cancel()
    frozen_at = time.monotonic()
    await asyncio.wait_for(b.acquire(), 30)
    # the candidate started counting no earlier than the freeze: never before a full duration
    assert time.monotonic() - frozen_at >= FAST.lease_seconds
    assert b.leading
    # "a" wakes up: its renewals are long overdue, so it stops leading at once, and stays out
    assert a.leading  # (it does not know yet)
    await asyncio.wait_for(a.hold(), 30)
    assert not a.leading
    lease = await kube.get_lease(namespace, "election")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"


async def test_racing_candidates_one_wins(kube: k8s.Kube, namespace: str) -> None:
    """Several candidates for a Lease that does not exist yet: one creates it, the others see
    it held (409 on create, or a live holder)."""
    candidates = [elector(kube, namespace, f"c{n}") for n in range(4)]
    tasks = [asyncio.create_task(c.acquire()) for c in candidates]
    done, pending = await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    winner = next(c for c, t in zip(candidates, tasks, strict=True) if t in done)
    holding = asyncio.create_task(winner.hold())
    await asyncio.sleep(FAST.lease_seconds * 2)  # the others keep looking: the Lease stays live
    assert [c for c in candidates if c.leading] == [winner]
    assert not any(t.done() for t in pending)
    for task in [*pending, holding]:
        task.cancel()


# ---- operator processes


def role(op: RunningOperator) -> str:
    """``standby`` or ``leader`` from the process's /healthz (kopf's probes once it leads)."""
    try:
        status, body = op.get("/healthz", op.health_port)
    except OSError:
        return "down"
    if status != 200:
        return "down"
    return "standby" if json.loads(body).get("role") == "standby" else "leader"


def leader_gauge(op: RunningOperator) -> float:
    _, text = op.get("/metrics")
    prefix = 'jobqueue_operator_leader{lease="jq-leader"}'
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return float(line.split()[-1])


def holder(cluster: devenv.Cluster, namespace: str) -> str:
    body: dict[str, Any] = get(cluster, "lease", "jq-leader", namespace) or {}
    return str((body.get("spec") or {}).get("holderIdentity") or "")


def test_only_the_lease_holder_runs_the_operator_and_a_standby_takes_over(
    cluster: devenv.Cluster, namespace: str, redis_url: str, start_operator: StartOperator
) -> None:
    def start(name: str) -> RunningOperator:
        return start_operator(
            namespaces=[namespace],
            redis_url=redis_url,
            leader_lease="jq-leader",
            env={"POD_NAME": name, "POD_NAMESPACE": namespace},
        )

    ops = {name: start(name) for name in ("op-a", "op-b")}

    def current() -> str | None:
        who = holder(cluster, namespace).split("_")[0]
        return who if who in ops and role(ops[who]) == "leader" else None

    first = wait_for("a leader", current)
    other = next(n for n in ops if n != first)
    assert role(ops[other]) == "standby"
    assert (leader_gauge(ops[first]), leader_gauge(ops[other])) == (1.0, 0.0)
    apply(cluster, jobqueue("one", namespace))
    wait_for("the leader's Deployment", lambda: get(cluster, "deployment", "one-worker", namespace))
    assert "Handler 'reconcile_jobqueue'" not in ops[other].logs()  # the standby ran no kopf

    # a clean stop (rolling update, pod deleted): the standby takes over and reconciles
    ops[first].stop()
    assert ops[first].proc.returncode == 0, ops[first].logs()
    assert wait_for("the standby leading", lambda: current() == other)
    apply(cluster, jobqueue("two", namespace))
    wait_for("the new leader's Deployment", lambda: get(cluster, "deployment", "two-worker", namespace))

    # a crash (SIGKILL): a fresh candidate takes over once the Lease expired, and reconciles
    ops["op-c"] = start("op-c")
    assert role(ops["op-c"]) == "standby"
    ops[other].proc.send_signal(signal.SIGKILL)
    ops[other].proc.wait(10)
    assert wait_for("the fresh candidate leading", lambda: current() == "op-c", timeout=60)
    apply(cluster, jobqueue("three", namespace))
    wait_for("its Deployment", lambda: get(cluster, "deployment", "three-worker", namespace))
    lease = get(cluster, "lease", "jq-leader", namespace) or {}
    assert lease["spec"]["leaseTransitions"] == 2

    # a freeze longer than the Lease (SIGSTOP): replaced meanwhile, the old leader wakes up,
    # finds its renewals overdue and exits (status 1) to rejoin as a standby
    ops["op-d"] = start("op-d")
    ops["op-c"].proc.send_signal(signal.SIGSTOP)
    try:
        assert wait_for("the standby leading", lambda: current() == "op-d", timeout=60)
    finally:
        ops["op-c"].proc.send_signal(signal.SIGCONT)
    assert ops["op-c"].proc.wait(30) == 1, ops["op-c"].logs()
    assert "lost the leader Lease" in ops["op-c"].logs()
    assert current() == "op-d"
