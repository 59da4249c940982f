"""The autoscaler with 1,000 JobQueues on one operator: Redis time per pass, CPU, memory.

    .venv/bin/python benchmarks/bench_autoscaler_scale.py [--queues 1000] [--window 60] [--busy 0.1]
        [--profile DIR]     # py-spy flame graphs (DIR/<window>-<queues>.svg) and collapsed stacks
        [--no-keda] [--controller-qps 200]
    .venv/bin/python benchmarks/bench_autoscaler_scale.py --queues 10000 --no-keda   # ~25 min

The documented runs are ``--queues 1000`` (with KEDA) and ``--queues 10000 --no-keda``: KEDA
takes up about 1.3 ScaledObjects per second here, so 10,000 would take over two hours before
its first window (docs/performance.md).

One real operator process (``python -m jobqueue_operator``) watching one namespace of the
real API server, N real JobQueues (minReplicas 0), no worker process:

1. **idle**: every queue empty. Operator CPU (% of one core) and RSS over ``--window``;
   passes made; **Redis time per pass** from ``INFO commandstats`` (the microseconds Redis
   spent in the autoscaler's EVALSHA calls, divided by the passes made); the client round
   trip per pass from the operator's own ``jobqueue_poll_duration_seconds``; then the
   operator is **restarted** with every queue in place: time until quiet and the writes it
   made (as ``operator_footprint.py`` measures them: nothing changed, so each is needless);
2. **backlog**: ``--busy`` of the queues get 2 queued jobs each (no worker takes them), so
   they scale to 2 replicas and their status figures are written every 10 s; same figures;
3. **baseline, same objects**: the operator restarted with ``JOBQUEUE_POLL_INTERVAL=0``
   (autoscaler off): its CPU and RSS, so the autoscaler's own cost is the difference;
4. **baseline, same figures read per queue**: what a per-queue scaler pays (KEDA polls each
   ScaledObject's trigger on its own; kopf timers would do one read per object): the same
   snapshot taken one queue per call, and KEDA's own Redis-list Lua (TYPE + LLEN) one queue
   per call, for all N queues, timed against one batched :func:`jobqueue.stats.snapshot`;
5. **baseline, the real KEDA** (2.21, built by ``make keda``; ``--no-keda`` skips it): N
   ScaledObjects on the same N queues' lists, each scaling a plain-RQ Deployment at 0 (how a
   KEDA user would run these queues), once at KEDA's default ``pollingInterval`` (30 s) and
   once at 1 s, our poll's pace. KEDA's operator and metrics server CPU and RSS over the same
   window, and the kube-controller-manager's (its HPA controller syncs the HPA KEDA makes for
   each ScaledObject), against our operator's idle figures.

Prints a table and, last, one JSON line. The API server, etcd and kwok are not the
operator's cost and are not counted (they run as separate processes).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

import operator_benchlib as bl
import operator_footprint
from jobqueue import JobSpec, enqueue_many, stats

assert str(bl.ROOT / "hack") in sys.path  # operator_benchlib put it there
import keda  # noqa: E402

#: KEDA's redis scaler script (pkg/scalers/redis_scaler.go, paraphrased): the length of one key.
KEDA_LIST_LENGTH_LUA = """
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'list' or t == 'none' then return redis.call('LLEN', KEYS[1])
elseif t == 'zset' then return redis.call('ZCARD', KEYS[1])
elseif t == 'set' then return redis.call('SCARD', KEYS[1])
elseif t == 'hash' then return redis.call('HLEN', KEYS[1]) end
return redis.error_reply('unsupported type')
"""


#: After the last reconcile: the status writes of the creation and their watch events die down.
SETTLE_SECONDS = 30
#: A window starts once the namespace's JobQueues and Deployments have had no write for this
#: long: on a loaded machine the Deployment controller is still writing the status of new
#: Deployments minutes after their creation, and the operator handles each of those events.
QUIET_SECONDS = 5


def wait_quiet(op: bl.Operator, namespace: str, port: int | None = None, timeout: float = 1800) -> None:
    """Until the namespace's JobQueues and Deployments see no write for QUIET_SECONDS and the
    operator does nothing else: under 5 % of a core besides, with the autoscaler on (its
    metrics on ``port``), the wall time of its passes (an upper bound of their CPU: at 10,000
    queues the passes alone are well over 5 %; after a start it resumes every JobQueue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu0 = op.cpu_seconds()
        passes0 = metric(scrape(port), "jobqueue_autoscaler_cycle_seconds_sum") if port else 0.0
        with (
            bl.EventCount(op.cluster, namespace, "jobqueues") as jqs,
            bl.EventCount(op.cluster, namespace, "deployments") as deps,
        ):
            time.sleep(QUIET_SECONDS)
        cpu = 100 * (op.cpu_seconds() - cpu0) / QUIET_SECONDS
        passes = (
            100 * (metric(scrape(port), "jobqueue_autoscaler_cycle_seconds_sum") - passes0) / QUIET_SECONDS
            if port
            else 0.0
        )
        if not jqs.counts and not deps.counts and cpu < 5 + passes:
            return
        bl.log(
            f"waiting for quiet: {jqs.counts} JobQueue and {deps.counts} Deployment events, operator "
            f"at {cpu:.0f} % of a core (passes {passes:.0f} %), in {QUIET_SECONDS} s"
        )
    bl.log("still not quiet; measuring anyway")


#: The last scrape: (seconds, bytes). Rendering a metrics page of 10,000 queues takes a while.
LAST_SCRAPE: list[tuple[float, int]] = []


def scrape(port: int) -> str:
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as r:
        body = r.read()
    LAST_SCRAPE[:] = [(time.monotonic() - t0, len(body))]
    return str(body.decode())


def metric(text: str, name: str) -> float:
    """Sum of every series of ``name`` (e.g. ``jobqueue_autoscaler_cycle_seconds_count``)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def series(text: str, name: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(rf"{name}\{{", line))


def redis_usec(conn: redis.Redis, command: str | None = None) -> int:
    stats_ = conn.info("commandstats")
    if command is not None:
        return int(stats_.get(f"cmdstat_{command}", {}).get("usec", 0))
    return sum(int(v["usec"]) for v in stats_.values())


def window(
    op: bl.Operator,
    conn: redis.Redis,
    port: int | None,
    seconds: float,
    *,
    namespace: str,
    profile: Path | None = None,
) -> dict[str, Any]:
    """CPU and RSS (as operator_footprint.py measures them), the JobQueue and Deployment writes
    (watch events) and, autoscaler on, passes and Redis time over ``seconds``; with
    ``profile``, a py-spy flame graph of the same window."""
    before = scrape(port) if port else ""
    usec0, all0, t0 = redis_usec(conn, "evalsha"), redis_usec(conn), time.monotonic()
    with (
        op.profiled(profile, seconds),
        bl.EventCount(op.cluster, namespace, "jobqueues") as jqs,
        bl.EventCount(op.cluster, namespace, "deployments") as deps,
    ):
        out: dict[str, Any] = operator_footprint.measure_window(op, seconds)
    if port and LAST_SCRAPE:
        seconds_, size = LAST_SCRAPE[0]
        out["metrics_scrape_seconds"], out["metrics_scrape_bytes"] = round(seconds_, 2), size
    out["jobqueue_writes_per_second"] = round(jqs.counts.get("MODIFIED", 0) / seconds, 2)
    out["deployment_writes_per_second"] = round(deps.counts.get("MODIFIED", 0) / seconds, 2)
    elapsed = time.monotonic() - t0
    if port:
        after = scrape(port)

        def delta(name: str) -> float:
            return metric(after, name) - metric(before, name)

        passes = delta("jobqueue_autoscaler_cycle_seconds_count")
        polls = delta("jobqueue_poll_duration_seconds_count")
        out |= {
            "passes": int(passes),
            "pass_ms_mean": round(1000 * delta("jobqueue_autoscaler_cycle_seconds_sum") / max(passes, 1), 2),
            "poll_round_trip_ms_mean": round(
                1000 * delta("jobqueue_poll_duration_seconds_sum") / max(polls, 1), 2
            ),
            "redis_ms_per_pass": round((redis_usec(conn, "evalsha") - usec0) / 1000 / max(passes, 1), 2),
            "redis_ms_per_second_all_commands": round((redis_usec(conn) - all0) / 1000 / elapsed, 2),
        }
    return out


def per_queue_baseline(conn: redis.Redis, names: list[str], rounds: int = 5) -> dict[str, Any]:
    """One batched snapshot vs. one call per queue (same figures), vs. KEDA's one-key Lua."""
    keda = conn.register_script(KEDA_LIST_LENGTH_LUA)
    out: dict[str, Any] = {}
    for label, run in (
        ("batched_snapshot", lambda: stats.snapshot(conn, names)),
        ("snapshot_per_queue", lambda: [stats.snapshot(conn, [q]) for q in names]),
        ("keda_list_length_per_queue", lambda: [keda(keys=[f"rq:queue:{q}"]) for q in names]),
    ):
        run()  # scripts loaded
        walls, usecs = [], []
        for _ in range(rounds):
            u0, t0 = redis_usec(conn), time.perf_counter()
            run()
            walls.append(time.perf_counter() - t0)
            usecs.append(redis_usec(conn) - u0)
        out[label] = {"wall_ms": round(1000 * min(walls), 2), "redis_ms": round(min(usecs) / 1000, 2)}
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / bl.CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def controller_manager_pid(cluster: bl.devenv.Cluster) -> int | None:
    """The dev cluster's kube-controller-manager (the HPA controller runs in it)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
            except OSError:
                continue
            if argv0.endswith("/kube-controller-manager") and f"/{cluster.name}/" in argv0:
                return int(proc.name)
    return None


def hpas(cluster: bl.devenv.Cluster, namespace: str) -> int:
    out = cluster.kubectl("get", "hpa", "-n", namespace, "-o", "name", check=False, timeout=120)
    return len(out.stdout.split()) if out.returncode == 0 else 0


def keda_windows(
    cluster: bl.devenv.Cluster,
    redis_server: bl.devenv.RedisServer,
    conn: redis.Redis,
    queues: list[str],
    seconds: float,
) -> dict[str, Any]:
    """The real KEDA scaling the same queues: one ScaledObject per queue on its RQ list, each
    scaling a plain-RQ Deployment at 0 (no pod runs: idle queues, as in our idle window);
    KEDA's processes' CPU and RSS, the kube-controller-manager's CPU and Redis time, per
    polling interval."""
    ns = f"bench-keda-{uuid.uuid4().hex[:4]}"
    cluster.create_namespace(ns)
    database = int(redis_server.url.rsplit("/", 1)[1] or 0)
    names = [f"k{i:05d}" for i in range(len(queues))]
    for start in range(0, len(names), 200):
        bl.kubectl_apply(
            cluster,
            [
                keda.plain_rq_deployment(
                    n, ns, queue=q, redis_url=redis_server.url, image="registry.invalid/plain-rq:1"
                )
                for n, q in zip(names[start : start + 200], queues[start : start + 200], strict=True)
            ],
        )
    kcm = controller_manager_pid(cluster)
    out: dict[str, Any] = {"keda_version": keda.Binaries.locate().version, "scaled_objects": len(names)}
    with keda.Keda(cluster, log_level="error") as running:
        assert running.operator is not None
        assert running.adapter is not None
        pids = {"operator": running.operator.pid, "metrics_server": running.adapter.pid}
        for label, polling in (("keda_defaults", None), ("keda_polling_1s", 1)):
            tuning = keda.Tuning(label, polling_interval=polling)
            applied = time.monotonic()
            for start in range(0, len(names), 200):
                bl.kubectl_apply(
                    cluster,
                    [
                        keda.scaled_object(
                            n,
                            ns,
                            deployment=n,
                            redis_address=f"127.0.0.1:{redis_server.port}",
                            list_name=f"rq:queue:{q}",
                            list_length=5,
                            max_replicas=5,
                            tuning=tuning,
                            database=database,
                        )
                        for n, q in zip(names[start : start + 200], queues[start : start + 200], strict=True)
                    ],
                )
            bl.wait_all(
                f"KEDA made an HPA for each of {len(names)} ScaledObjects",
                lambda: hpas(cluster, ns) >= len(names),
                timeout=1800,
            )
            # how long KEDA takes to take up the ScaledObjects: what bounds the count measurable here
            out[f"{label}_hpas_ready_seconds"] = round(time.monotonic() - applied, 1)
            bl.log(f"KEDA: every HPA there {out[f'{label}_hpas_ready_seconds']} s after the first apply")
            time.sleep(SETTLE_SECONDS + (polling or 30))  # a polling round at the new interval
            bl.log(f"KEDA, {len(names)} ScaledObjects, {label}: measuring {seconds:.0f} s")
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            kcm0 = cpu_seconds(kcm) if kcm else 0.0
            usec0, t0 = redis_usec(conn), time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            row = {
                f"{k}_cpu_percent_of_one_core": round(100 * (cpu_seconds(p) - cpu0[k]) / elapsed, 2)
                for k, p in pids.items()
            }
            row["cpu_percent_of_one_core"] = round(sum(row.values()), 2)
            row["rss_mib"] = round(sum(rss_mib(p) for p in pids.values()), 1)
            if kcm:
                row["controller_manager_cpu_percent_of_one_core"] = round(
                    100 * (cpu_seconds(kcm) - kcm0) / elapsed, 2
                )
            row["redis_ms_per_second_all_commands"] = round((redis_usec(conn) - usec0) / 1000 / elapsed, 2)
            out[label] = row
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return out


def all_scaled(cluster: bl.devenv.Cluster, namespace: str, names: list[str], replicas: int) -> bool:
    out = cluster.kubectl(
        "get",
        "deployments",
        "-n",
        namespace,
        "--no-headers",
        "-o",
        "custom-columns=N:.metadata.name,R:.spec.replicas",
        timeout=120,
    ).stdout
    have = dict(line.split() for line in out.splitlines() if line.strip())
    return all(have.get(f"{n}-worker") == str(replicas) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each steady measurement")
    parser.add_argument("--busy", type=float, default=0.1, help="share of queues given a backlog")
    parser.add_argument("--profile", type=Path, help="directory for py-spy flame graphs of each window")
    parser.add_argument("--no-keda", action="store_true", help="skip the real KEDA's windows")
    parser.add_argument(
        "--controller-qps",
        type=int,
        default=bl.CONTROLLER_QPS,
        help="the kube-controller-manager's API rate (its own default: 20)",
    )
    args = parser.parse_args()

    def profile(label: str) -> Path | None:
        return args.profile / f"{label}-{args.queues}" if args.profile else None

    result: dict[str, Any] = {"benchmark": "autoscaler_scale", "queues": args.queues}
    names = [f"q-{i:04d}" for i in range(args.queues)]
    with (
        bl.environment(controller_qps=args.controller_qps) as (cluster, redis_server),
        tempfile.TemporaryDirectory() as tmp,
    ):
        conn = redis.Redis.from_url(redis_server.url)
        ns = f"bench-as-{uuid.uuid4().hex[:4]}"
        cluster.kubectl("create", "namespace", ns)
        port = bl.devenv.free_port()

        def autoscaling(log: str) -> bl.Operator:
            """An operator with the autoscaler on, its metrics on ``port``."""
            return bl.Operator(
                cluster,
                [ns],
                redis_server.url,
                Path(tmp) / log,
                extra_env={"JOBQUEUE_METRICS_PORT": str(port)},
            )

        op = autoscaling("operator.log").start()
        try:
            bl.log(f"creating {args.queues} JobQueues")
            for start in range(0, args.queues, 100):
                batch = [bl.jobqueue(n, ns, concurrency=5) for n in names[start : start + 100]]
                bl.kubectl_apply(cluster, batch)
            # each check reads every queue (a metrics page, a list): not too often at 10,000
            poll = max(0.5, args.queues / 2000)
            bl.wait_all(
                "the autoscaler has every queue in its pass",
                lambda: series(scrape(port), "jobqueue_desired_replicas") >= args.queues,
                timeout=1800,
                interval=poll,
            )
            bl.wait_all(
                "every JobQueue reconciled",
                lambda: operator_footprint.all_reconciled(cluster, ns, args.queues),
                timeout=1800,
                interval=poll,
            )
            time.sleep(SETTLE_SECONDS)
            wait_quiet(op, ns, port)
            bl.log(f"idle, autoscaler on: measuring {args.window:.0f} s")
            result["idle"] = window(op, conn, port, args.window, namespace=ns, profile=profile("idle"))
            op.stop()

            bl.log(f"restarting the operator with {args.queues} idle JobQueues in place")
            op = autoscaling("operator-restarted.log")
            result["restart"] = operator_footprint.restarted(
                op, ns, result["idle"]["cpu_percent_of_one_core"]
            )
            bl.log(f"restart: {result['restart']}")

            busy = names[: max(1, int(args.queues * args.busy))]
            bl.log(f"backlog in {len(busy)} queues")
            for n in busy:
                enqueue_many(
                    f"{ns}.{n}", [JobSpec("glec.jobs.anything", args=[i]) for i in range(2)], connection=conn
                )
            bl.wait_all("busy queues at 2 replicas", lambda: all_scaled(cluster, ns, busy, 2), timeout=600)
            time.sleep(SETTLE_SECONDS)  # the scale-ups' Deployment, ReplicaSet and pod writes
            bl.log(f"backlog, autoscaler on: measuring {args.window:.0f} s")
            result["backlog"] = window(op, conn, port, args.window, namespace=ns, profile=profile("backlog"))
        finally:
            op.stop()

        bl.log("baseline: the same operator and objects with the autoscaler off")
        off = bl.Operator(
            cluster,
            [ns],
            redis_server.url,
            Path(tmp) / "operator-off.log",
            extra_env={"JOBQUEUE_POLL_INTERVAL": "0"},
        ).start()
        try:
            time.sleep(SETTLE_SECONDS)
            wait_quiet(off, ns)  # the resume handlers of every JobQueue
            result["autoscaler_off"] = window(
                off, conn, None, args.window, namespace=ns, profile=profile("off")
            )
        finally:
            off.stop()
        bl.log("baseline: the same figures read one queue per call")
        result["reads"] = per_queue_baseline(conn, [f"{ns}.{n}" for n in names])
        if not args.no_keda:
            bl.log(f"baseline: the real KEDA with {args.queues} ScaledObjects on the same queues")
            result["keda"] = keda_windows(
                cluster, redis_server, conn, [f"{ns}.{n}" for n in names], args.window
            )

    idle, backlog, off_ = result["idle"], result["backlog"], result["autoscaler_off"]
    reads = result["reads"]
    result["autoscaler_cpu_percent"] = round(
        backlog["cpu_percent_of_one_core"] - off_["cpu_percent_of_one_core"], 2
    )
    result["per_queue_vs_batched_redis_ratio"] = round(
        reads["snapshot_per_queue"]["redis_ms"] / max(reads["batched_snapshot"]["redis_ms"], 1e-3), 1
    )
    result["per_queue_vs_batched_wall_ratio"] = round(
        reads["snapshot_per_queue"]["wall_ms"] / max(reads["batched_snapshot"]["wall_ms"], 1e-3), 1
    )
    print(
        f"autoscaler with {args.queues} JobQueues on one operator (goals up to 10,000 queues: Redis "
        "<= 50 ms per pass, RSS <= 500 MiB, <= 40 us of CPU per queue per pass)"
    )
    print(
        f"{'':<40}{'CPU %':>8}{'RSS MiB':>9}{'pass ms':>9}{'Redis ms/pass':>15}{'round trip ms':>15}"
        f"{'JQ writes/s':>13}"
    )
    for label, row in (
        (f"idle ({args.queues} empty queues)", idle),
        (f"backlog ({int(args.queues * args.busy)} queues busy)", backlog),
    ):
        print(
            f"{label:<40}{row['cpu_percent_of_one_core']:>8.2f}{row['rss_mib']:>9.1f}"
            f"{row['pass_ms_mean']:>9.2f}{row['redis_ms_per_pass']:>15.2f}{row['poll_round_trip_ms_mean']:>15.2f}"
            f"{row['jobqueue_writes_per_second']:>13.2f}"
        )
    print(
        f"{'baseline: same operator, autoscaler off':<40}{off_['cpu_percent_of_one_core']:>8.2f}"
        f"{off_['rss_mib']:>9.1f}{'':>54}{off_['jobqueue_writes_per_second']:>13.2f}"
    )
    for label, row in (("idle", idle), ("backlog", backlog)):
        own = row["cpu_percent_of_one_core"] - off_["cpu_percent_of_one_core"]
        row["autoscaler_us_per_queue_per_pass"] = round(
            10_000 * own / args.queues / max(row["passes"] / args.window, 1e-9), 1
        )
        print(
            f"the autoscaler's own CPU, {label} (minus autoscaler off): {own:.2f} % of a core = "
            f"{row['autoscaler_us_per_queue_per_pass']:.1f} us per queue per pass (goal <= 40)"
        )
    print(f"the autoscaler's own CPU (backlog - off): {result['autoscaler_cpu_percent']:.2f} % of a core")
    r = result["restart"]
    print(
        f"restart with {args.queues} idle JobQueues in place: quiet after {r['seconds_to_quiet']} s "
        f"(goal <= 60 s), {r['cpu_seconds']} CPU-s, {r['jobqueue_writes']} JobQueue and "
        f"{r['deployment_writes_by_operator']} Deployment writes by the operator (goal 0)"
    )
    if "metrics_scrape_seconds" in backlog:
        print(
            f"one scrape of the operator's /metrics: {backlog['metrics_scrape_seconds']:.2f} s, "
            f"{backlog['metrics_scrape_bytes'] / 1e6:.1f} MB"
        )
    print(f"reading all {args.queues} queues once:")
    for label, row in reads.items():
        print(f"  {label:<30} wall {row['wall_ms']:>9.2f} ms   Redis {row['redis_ms']:>9.2f} ms")
    print(
        f"per-queue reads vs one batched snapshot: {result['per_queue_vs_batched_redis_ratio']}x the "
        f"Redis time, {result['per_queue_vs_batched_wall_ratio']}x the wall time"
    )
    if "keda" in result:
        k = result["keda"]
        print(
            f"the real KEDA {k['keda_version']}, {k['scaled_objects']} ScaledObjects on the same idle "
            "queues (operator + metrics server; the controller-manager runs the HPAs):"
        )
        print(f"{'':<40}{'CPU %':>8}{'RSS MiB':>9}{'KCM CPU %':>11}{'Redis ms/s':>12}{'CPU vs ours':>13}")
        ours = idle["cpu_percent_of_one_core"]
        print(
            f"{'ours, idle (whole operator, 1 s passes)':<40}{ours:>8.2f}{idle['rss_mib']:>9.1f}{'':>11}"
            f"{idle['redis_ms_per_second_all_commands']:>12.2f}{'1.00x':>13}"
        )
        for label, text in (
            ("keda_defaults", "KEDA, default 30 s polling"),
            ("keda_polling_1s", "KEDA, 1 s polling"),
        ):
            row = k[label]
            ratio = result[f"{label}_cpu_ratio_to_ours_idle"] = round(
                row["cpu_percent_of_one_core"] / max(ours, 1e-3), 2
            )
            print(
                f"{text:<40}{row['cpu_percent_of_one_core']:>8.2f}{row['rss_mib']:>9.1f}"
                f"{row.get('controller_manager_cpu_percent_of_one_core', float('nan')):>11.2f}"
                f"{row['redis_ms_per_second_all_commands']:>12.2f}{ratio:>12.2f}x"
            )
    bl.emit(result)


if __name__ == "__main__":
    main()
