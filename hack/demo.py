"""The main job (`make demo`): the seed's eleven queues and two recurring jobs, really processing.

Step by step, on one machine without Docker:

1. a local Kubernetes control plane (built from source on first use), Redis, Prometheus and
   the pod runner that runs kwok pods as local processes (hack/devenv.py);
2. the Helm chart installs the operator; its pod runs with the chart's ServiceAccount token;
3. the seed's JobQueues and RecurringJobs are applied (manifests/samples/), with shorter
   scale-down timers so the whole cycle fits in a few minutes;
4. a realistic mix of the seed's job kinds is enqueued (examples/glec_jobs.py), plus a
   duplicate id, a payload naming an unregistered function, and two manual recurring runs;
5. a live table shows each queue scaling up, draining, and going back to zero;
6. a summary: jobs done and failed, retries, wait times from Prometheus, scaling decisions.

The environment stays up afterwards for exploring (`kubectl get jq -n glec`); `make dev-down`
stops it. Run it again to enqueue another round.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HACK = Path(__file__).resolve().parent
sys.path.insert(0, str(HACK))
sys.path.insert(0, str(HACK.parent / "examples"))

import devenv  # noqa: E402

ROOT = devenv.ROOT
NAMESPACE = "glec"
OPERATOR_NAMESPACE = "jobqueue-system"
RELEASE = "jobqueue-operator"
STEPS = 6
DEMO_LOG = devenv.CACHE / "demo" / "demo.log"
#: The demo's shorter timers (production defaults: 60 s and 300 s) so you see the way back down.
DEMO_SCALING = {"scaleDownDelaySeconds": 10, "idleSecondsBeforeZero": 20}


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.step = 0
        self.title = "start"
        self.state: dict[str, Any] = {}
        self.kube_env: dict[str, str] = {}

    # -- output

    def say(self, msg: str) -> None:
        print(f"  {msg}", flush=True)

    def begin(self, title: str, explain: str) -> None:
        self.step += 1
        self.title = title
        print(f"\n[{self.step}/{STEPS}] {title}   ({time.monotonic() - self.t0:.0f}s)", flush=True)
        for line in explain.strip().splitlines():
            print(f"      {line.strip()}", flush=True)

    # -- tools

    def run(self, *argv: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            argv, capture_output=True, text=True, input=input, env=self.kube_env, check=False, timeout=300
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"command failed: {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.run("kubectl", *args, **kw)

    def kjson(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    # -- steps

    def environment(self) -> None:
        self.begin(
            "Local cluster, Redis, Prometheus and the pod runner",
            """A real kube-apiserver, controller-manager, scheduler and etcd (Kubernetes v1.36,
                   built from source the first time: ~6 min), two kwok nodes, and a pod runner that
                   runs the cluster's pods as local processes (no Docker needed).""",
        )
        if not devenv.STATE_FILE.exists():
            devenv.cmd_up()
        self.state = devenv.load_state()
        self.kube_env = {
            **os.environ,
            "KUBECONFIG": self.state["kubeconfig"],
            "PATH": f"{self.state['path']}:{os.environ['PATH']}",
        }
        nodes = self.kjson("get", "nodes")["items"]
        self.say(
            f"cluster: {len(nodes)} Ready nodes, Kubernetes "
            f"{json.loads(self.kubectl('version', '-o', 'json'))['serverVersion']['gitVersion']}"
        )
        self.say(f"Redis {self.state['redis_url']}   Prometheus {self.state['prometheus_url']}")

    def install(self) -> None:
        self.begin(
            "Install the operator with Helm",
            """helm upgrade --install of helm/jobqueue-operator: CRDs, RBAC, the operator
                   Deployment. The pod runner starts the operator pod with the chart's ServiceAccount
                   token, so it has exactly the chart's permissions.""",
        )
        self.run(
            "helm",
            "upgrade",
            "--install",
            RELEASE,
            str(ROOT / "helm" / "jobqueue-operator"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            f"redis.url={self.state['redis_url']}",
            "--set",
            "operator.logFormat=plain",
            # one tenant on a throw-away local Redis without a password: namespace
            # isolation (the chart's default) needs a password on the default user
            "--set",
            "redis.isolation=none",
            "--wait",
            "--timeout",
            "120s",
        )
        devenv.wait_until("the operator to serve", self._operator_ready, timeout=120)
        self.say(
            "operator running: "
            + self.kubectl("get", "deploy", "-n", OPERATOR_NAMESPACE, "-o", "name").strip()
        )

    def _operator_ready(self) -> bool:
        for entry in self._endpoints():
            if entry["namespace"] == OPERATOR_NAMESPACE and "JOBQUEUE_HEALTH_PORT" in entry["ports"]:
                port = entry["ports"]["JOBQUEUE_HEALTH_PORT"]
                out = subprocess.run(
                    ["curl", "-fsS", f"http://127.0.0.1:{port}/healthz"], capture_output=True, check=False
                )
                return out.returncode == 0
        return False

    def _endpoints(self) -> list[dict[str, Any]]:
        import podrunner

        path = podrunner.DEFAULT_STATE_DIR / "endpoints.json"
        return json.loads(path.read_text()) if path.exists() else []

    def apply_samples(self) -> None:
        self.begin(
            "Apply the seed's eleven queues and two recurring jobs",
            f"""manifests/samples/ into namespace {NAMESPACE} (Pod Security "restricted"). For the
                   demo, scale-down timers are shortened to {DEMO_SCALING} so the return to zero fits
                   in a few minutes.""",
        )
        if self.kubectl("get", "namespace", NAMESPACE, check=False).strip() == "":
            self.kubectl("create", "namespace", NAMESPACE)
        self.kubectl(
            "label", "namespace", NAMESPACE, "--overwrite", "pod-security.kubernetes.io/enforce=restricted"
        )
        docs = []
        for name in ("jobqueues.yaml", "recurringjobs.yaml"):
            for doc in yaml.safe_load_all((ROOT / "manifests" / "samples" / name).read_text()):
                if doc and doc["kind"] == "JobQueue":
                    doc["spec"].setdefault("scaling", {}).update(DEMO_SCALING)
                if doc:
                    docs.append(doc)
        self.kubectl(
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        )
        devenv.wait_until("all JobQueues Ready", lambda: self._all_ready("jobqueues"), timeout=120)
        devenv.wait_until("all RecurringJobs Ready", lambda: self._all_ready("recurringjobs"), timeout=120)
        print(self.kubectl("get", "jobqueues,recurringjobs", "-n", NAMESPACE))

    def _all_ready(self, plural: str) -> bool:
        items = self.kjson("get", plural, "-n", NAMESPACE)["items"]
        return bool(items) and all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (i.get("status") or {}).get("conditions", [])
            )
            for i in items
        )

    def enqueue(self) -> dict[str, int]:
        self.begin(
            "Enqueue a realistic mix of the seed's jobs",
            """EI updates, proposal rankings, order status changes, dispatch optimisations,
                   notifications (some fanning out e-mails), e-mails (10 % transient failures →
                   retries with backoff), audit log entries, DTG syncs (each handing an EI update on),
                   reports written to disk, daily aggregates; plus a duplicate job id, a payload
                   naming os.system, and manual runs of the two recurring jobs.""",
        )
        import glec_jobs
        import redis

        from jobqueue import JobSpec, enqueue, enqueue_many

        conn = redis.Redis.from_url(self.state["redis_url"])
        rng = random.Random(7)
        run = self.run_id = f"{int(time.time())}"
        self.enqueued_at = time.monotonic()
        scale = self.args.scale
        batches: dict[str, list[JobSpec]] = {
            "ei:update": [
                JobSpec(
                    glec_jobs.update_ei,
                    (f"fleet-{i}", round(rng.uniform(40, 160), 1)),
                    job_id=f"ei-{run}-{i}",
                )
                for i in range(int(400 * scale))
            ],
            "proposal:ranking": [
                JobSpec(
                    glec_jobs.rank_proposals,
                    (
                        f"bid-{i}",
                        [
                            {
                                "price": rng.uniform(80, 200),
                                "ei": rng.uniform(50, 150),
                                "on_time": rng.uniform(0.7, 1),
                            }
                            for _ in range(30)
                        ],
                    ),
                )
                for i in range(int(60 * scale))
            ],
            "order:status-update": [
                JobSpec(
                    glec_jobs.update_order_status,
                    (
                        f"order-{i}",
                        "created",
                        "cancelled"
                        if rng.random() < 0.05
                        else ("assigned" if rng.random() < 0.97 else "delivered"),
                    ),
                )
                for i in range(int(300 * scale))
            ],
            "dispatch:optimize": [
                JobSpec(
                    glec_jobs.optimize_dispatch, (f"batch-{i}", *glec_jobs.random_dispatch_batch(rng, 250, 8))
                )
                for i in range(int(9 * scale))
            ],
            "notification:send": [
                JobSpec(
                    glec_jobs.send_notification,
                    (f"user-{i}", "BID_UPDATE", f"Bid {i} updated (run {run})", "Your bid ranking changed"),
                    {"send_email": rng.random() < 0.2},
                )
                for i in range(int(500 * scale))
            ],
            "email:send": [
                JobSpec(glec_jobs.send_email, (f"ops{i}@example.com", "Daily digest"))
                for i in range(int(150 * scale))
            ],
            "audit:log": [
                JobSpec(glec_jobs.write_audit_log, (f"user-{i % 40}", "update", f"order-{i}"))
                for i in range(int(800 * scale))
            ],
            "analytics:aggregate": [
                JobSpec(glec_jobs.daily_aggregate, kwargs={"day": f"2026-11-{i + 1:02d}"})
                for i in range(int(4 * scale))
            ],
            "data:dtg-sync": [
                JobSpec(glec_jobs.sync_dtg_data, (f"v-{i}", f"fleet-{i % 50}", f"{run}-{i}"))
                for i in range(int(100 * scale))
            ],
            "report:generate": [
                JobSpec(glec_jobs.generate_report, ("emissions", f"2026-W{i + 1:02d}-{run}"))
                for i in range(int(6 * scale))
            ],
        }
        # the e-mails notifications will fan out, under the ids the job itself derives
        self.fanout = [
            glec_jobs.email_job_id(*spec.args)
            for spec in batches["notification:send"]
            if (spec.kwargs or {}).get("send_email")
        ]
        self.job_ids: dict[str, list[str]] = {}
        for queue, specs in batches.items():
            t = time.monotonic()
            results = enqueue_many(queue, specs, connection=conn)
            self.job_ids[queue] = [r.id for r in results]
            self.say(f"{queue:22} {len(results):5} jobs  ({(time.monotonic() - t) * 1000:.0f} ms)")

        first = enqueue(
            "ei:update", glec_jobs.update_ei, "fleet-x", 77.0, job_id=f"ei-dup-{run}", connection=conn
        )
        again = enqueue(
            "ei:update", glec_jobs.update_ei, "fleet-x", 99.0, job_id=f"ei-dup-{run}", connection=conn
        )
        self.say(
            f"idempotent id: first add duplicate={first.duplicate}, second add duplicate="
            f"{again.duplicate} (status {again.status}; the job runs once)"
        )
        self.rogue = enqueue("audit:log", "os.system", "echo pwned", connection=conn).id
        self.say(f"payload naming os.system enqueued as {self.rogue}: the worker must refuse it")
        for rj in ("daily-analytics", "cleanup-old-data"):
            self.kubectl("create", "job", "-n", NAMESPACE, f"{rj}-demo-{run}", f"--from=cronjob/{rj}")
        self.say("manual runs of both CronJobs created (each enqueues exactly one job)")
        self.job_ids["ei:update"].append(first.id)
        return {q: len(ids) for q, ids in self.job_ids.items()}

    def watch(self) -> None:
        self.begin(
            "Watch the queues scale up, drain, and return to zero",
            """WORKERS: ready/desired pods as the operator set them from the backlog; QUEUED and
                   RUNNING: live from Redis; the last column is the operator's own reason for its
                   latest scaling decision (status.lastScaleReason).""",
        )
        import redis

        from jobqueue import queue_stats

        conn = redis.Redis.from_url(self.state["redis_url"])
        deadline = time.monotonic() + self.args.timeout
        self.peak: dict[str, int] = {}
        self.drained_at: float | None = None
        last_print = 0.0
        while time.monotonic() < deadline:
            queues = sorted(
                self.kjson("get", "jobqueues", "-n", NAMESPACE)["items"], key=lambda i: i["metadata"]["name"]
            )
            pods = {
                d["metadata"]["name"]: d for d in self.kjson("get", "deployments", "-n", NAMESPACE)["items"]
            }
            settled, rows = True, []
            for jq in queues:
                name, st = jq["metadata"]["name"], jq.get("status") or {}
                dep = pods.get(f"{name}-worker", {})
                want = int((dep.get("spec") or {}).get("replicas") or 0)
                ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
                live = queue_stats(jq["spec"]["queueName"], connection=conn)
                self.peak[name] = max(self.peak.get(name, 0), want)
                minimum = (jq["spec"].get("scaling") or {}).get("minReplicas", 0)
                if live.queued + live.scheduled + live.running > 0 or want > minimum:
                    settled = False
                rows.append(
                    f"  {name:20} {ready:>3}/{want:<3} {live.queued:>7} {live.running:>7}  "
                    f"{(st.get('lastScaleReason') or '')[:64]}"
                )
            if time.monotonic() - last_print >= self.args.refresh or settled:
                last_print = time.monotonic()
                print(
                    f"\n  t={time.monotonic() - self.t0:5.0f}s  {'NAME':20} {'WORKERS':7} {'QUEUED':>7} "
                    f"{'RUNNING':>7}  LAST SCALING DECISION",
                    flush=True,
                )
                print("\n".join(rows), flush=True)
            if settled:
                self.say("every queue drained and back at its minimum replicas")
                return
            time.sleep(1)
        self.say(f"stopped watching after {self.args.timeout:.0f}s (some queues still busy)")

    def summary(self) -> None:
        self.begin(
            "Summary",
            """Every job the demo enqueued, looked up by id (a finished job that is gone
                   was removed at once: the seed's removeOnComplete: true); wait times from Prometheus.""",
        )
        import redis

        from jobqueue import UnknownJobError, get_job  # the demo's own jobs, by id: exact

        conn = redis.Redis.from_url(self.state["redis_url"])
        prom = devenv.PrometheusServer(port=int(self.state["prometheus_url"].rsplit(":", 1)[1]))
        window = f"{int(time.monotonic() - self.enqueued_at) + 30}s"
        print(
            f"  {'QUEUE':22} {'ENQUEUED':>8} {'SUCCEEDED':>9} {'FAILED':>7} {'RETRIED':>7} {'PEAK PODS':>9}"
        )
        names = {
            jq["spec"].get("queueName"): jq["metadata"]["name"]
            for jq in self.kjson("get", "jobqueues", "-n", NAMESPACE)["items"]
        }
        for queue, ids in sorted({**self.job_ids, "email:send (fan-out)": self.fanout}.items()):
            outcome: dict[str, int] = {}
            retried = 0
            for job_id in ids:
                try:
                    info = get_job(queue.split(" ")[0], job_id, connection=conn)
                except UnknownJobError:  # removed once finished (keepCompleted: 0, the seed's `true`)
                    outcome["finished"] = outcome.get("finished", 0) + 1
                    continue
                outcome[info.status] = outcome.get(info.status, 0) + 1
                retried += info.attempts_made > 1
            print(
                f"  {queue:22} {len(ids):8} {outcome.get('finished', 0):9} {outcome.get('failed', 0):7} "
                f"{retried:7} {self.peak.get(names.get(queue, ''), 0):9}"
            )
        self.say(
            "(failed order updates: the impossible status transitions, refused on every attempt; "
            "retried e-mails: the relay's transient timeouts)"
        )
        rogue = get_job("audit:log", self.rogue, connection=conn)
        reason = (rogue.failed_reason or "").strip().splitlines()
        self.say(f"os.system payload → {rogue.status}: {reason[-1][:120] if reason else '-'}")
        q = (
            "histogram_quantile(0.95, sum by (le, queue) "
            f"(increase(jobqueue_job_wait_seconds_bucket[{window}])))"
        )
        waits = {r["metric"].get("queue"): float(r["value"][1]) for r in prom.query(q)}
        if waits:
            self.say(
                "p95 wait, enqueued → started: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(waits.items()) if not math.isnan(v))
            )
        manual_runs = (("daily-analytics", "analytics:aggregate"), ("cleanup-old-data", "cleanup:old-data"))
        for rj, queue in manual_runs:
            job_id = f"rj_{NAMESPACE}_{rj}-demo-{self.run_id}"
            try:
                ended = get_job(queue, job_id, connection=conn).status
            except UnknownJobError:
                ended = "finished and already removed (keepCompleted: 0)"
            self.say(f"manual run of RecurringJob {rj}: job {job_id}: {ended}")
        events = self.kubectl(
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--sort-by=.lastTimestamp",
            "--field-selector",
            "reason=ScaledUp",
            "-o",
            "custom-columns=OBJECT:.involvedObject.name,MESSAGE:.message",
            check=False,
        )
        lines = events.strip().splitlines()
        if len(lines) > 1:
            print("\n  Scaling events (kubectl get events --field-selector reason=ScaledUp):")
            for line in lines[:8]:
                print(f"    {line[:110]}")
        print()
        print(self.kubectl("get", "jobqueues,recurringjobs", "-n", NAMESPACE))
        print(f"""  Explore:   eval "$(.venv/bin/python hack/devenv.py env)"
             kubectl get jq,rj -n {NAMESPACE}      kubectl describe jq ei-update -n {NAMESPACE}
             .venv/bin/jobqueue stats             Prometheus: {self.state["prometheus_url"]}
  Pod logs:  .cache/podrunner/<namespace>/<pod>.log
  Stop:      make dev-down""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the number of jobs (default 1)")
    p.add_argument("--timeout", type=float, default=480, help="seconds to watch at most")
    p.add_argument("--refresh", type=float, default=5, help="seconds between table prints")
    demo = Demo(p.parse_args())
    started_environment = not devenv.STATE_FILE.exists()
    steps: list[Callable[[], Any]] = [
        demo.environment,
        demo.install,
        demo.apply_samples,
        demo.enqueue,
        demo.watch,
        demo.summary,
    ]
    try:
        for s in steps:
            s()
    except KeyboardInterrupt:
        raise SystemExit("make demo interrupted; what it started stays up (make dev-down stops it)") from None
    except (Exception, SystemExit) as e:
        # One line on the terminal, the whole story in the log, and nothing left running that
        # this run started (an environment that was already up stays up).
        line = devenv.one_line_failure(f"make demo, step {demo.step}/{STEPS} ({demo.title})", e, DEMO_LOG)
        if started_environment and devenv.STATE_FILE.exists():
            print("  stopping the environment this run started …", file=sys.stderr, flush=True)
            with contextlib.redirect_stderr(io.StringIO()) as quiet:
                try:
                    devenv.cmd_down()
                except Exception as down_error:
                    print(f"(stopping failed too: {down_error})", file=quiet)
            with DEMO_LOG.open("a") as out:
                out.write(quiet.getvalue())
        raise SystemExit(line) from None


if __name__ == "__main__":
    main()
