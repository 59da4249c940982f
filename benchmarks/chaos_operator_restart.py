"""Chaos: the operator restarted twice in the middle of a burst.

    .venv/bin/python benchmarks/chaos_operator_restart.py

The product as installed by the chart, with **one** operator replica (``replicaCount: 1``:
no standby, so these are real restarts; two replicas are ``chaos_leader_failover.py``'s).
Queue ``steady`` gets 320 one-second jobs and scales to 4 pods; the operator is crashed (its
pod force-deleted: SIGKILL; the new pod waits out the Lease the dead one never released) and
queue ``latecomer`` gets 40 jobs while it is down; then, with ``steady`` still busy, it is
restarted the way ``helm upgrade`` does (``kubectl rollout restart``: the new pod starts as a
standby, the old one is SIGTERMed and releases the Lease) and ``steady``'s ``maxReplicas`` is
lowered to 3 meanwhile. Reported: how soon each new operator is
live, how soon the work and the spec change that arrived while it was down are acted on,
every replica value seen, the children per owner (goal: exactly one Deployment per JobQueue
and one CronJob per RecurringJob) and the jobs' audit (goal: each ran once).

No baseline is run: neither plain RQ (no operator) nor KEDA (whose behaviour across its own
restarts is not documented in figures) gives a like-for-like run on this machine, so the
figures are set against the goals only. The scenario is ``chaoskit.operator_restarts``,
which ``tests/integration/e2e/test_chaos_operator_restart.py`` runs and audits. Last line: JSON.
"""

from __future__ import annotations

from typing import Any

import e2e_benchlib as el
import operator_benchlib as bl


def main() -> None:
    result: dict[str, Any] = {"benchmark": "chaos_operator_restart"}
    with el.installed("restart", values={"replicaCount": 1}) as setup:
        bl.log("burst, crash, work while down, rollout restart, spec change while down")
        run = el.chaoskit.operator_restarts(setup.product, setup.conn)
    print(run.report())
    result |= run.figures()
    one_each = all(n == 1 for counts in run.children.values() for n in counts)
    ok = one_each and run.audit.exactly_once()
    el.conclude(result, "one child per owner, every job once", ok)


if __name__ == "__main__":
    main()
