"""Chaos: Redis gone for 30 s while worker pods run jobs — frozen, then stopped.

    .venv/bin/python benchmarks/chaos_redis_outage.py [--seconds 30]

The product as installed by the chart; queue ``outage`` (2 pods, scale-down delays of 2 and
4 s) runs 120 half-second jobs. Once both pods are busy, Redis goes away for 30 s, twice:

* **frozen** (SIGSTOP): every client waits, as in a network partition;
* **stopped** (``SHUTDOWN SAVE``) and started again on the same port, as for maintenance.

Reported: the replicas while Redis was away (goal: unchanged — never scale on unknown
demand), how soon the JobQueue said so (``RedisReachable=False``), and after Redis came back
how soon the condition cleared, jobs flowed again and every job ended; worker restarts and
the jobs' audit (goal: one result each; a job whose own Redis write failed in the outage
fails that attempt and is retried, so "started more than once" counts those). No baseline is
run: the comparison is with KEDA's documented behaviour for a failing scaler — without a
``fallback`` section the HPA keeps the replicas it has (as we do), with one it moves to
``fallback.replicas`` after ``failureThreshold`` failed polls, neither of which needs a
run to know. The scenario is ``chaoskit.redis_outage``, which
``tests/integration/e2e/test_chaos_redis_outage.py`` runs (frozen) and audits. Last line: JSON.
"""

from __future__ import annotations

import argparse
from typing import Any

import e2e_benchlib as el
import operator_benchlib as bl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "chaos_redis_outage"}
    ok = True
    with bl.environment() as environment:
        for how in ("pause", "stop"):
            with el.installed(f"outage-{how}", environment=environment) as setup:
                bl.log(f"Redis {how} for {args.seconds:.0f} s")
                outage = el.chaoskit.redis_outage(
                    setup.product, setup.redis_server, setup.conn, how=how, seconds=args.seconds
                )
                setup.conn.flushdb()
            print(outage.report())
            result[how] = outage.figures()
            ok = ok and (
                set(outage.replicas_during) == {outage.replicas_before}
                and outage.reported_after is not None
                and outage.audit.statuses == {"finished": outage.audit.jobs}
                and outage.audit.results == {1: outage.audit.jobs}
                and outage.history[-1] == 0
            )
    el.conclude(result, "replicas held, condition reported, one result per job, back to zero", ok)


if __name__ == "__main__":
    main()
