"""The chart's operator really running: the pod runner (hack/podrunner.py) runs the operator
pod the chart created as a local process, with a token of the chart's ServiceAccount, so
every API call the operator makes is authorised by the chart's RBAC — nothing else. The
namespace enforces the "restricted" Pod Security Standard, for the operator pod and for the
worker pods the operator creates."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

import dashboardkit
import devenv
import jobqueue
import podrunner
from integration.chart import clusterkit
from integration.chart.clusterkit import get_json
from jobqueue import metricnames
from jobqueue import settings as queue_settings
from jobqueue_operator.monitoring import generate
from unit.chart import chartkit
from unit.monitoring import vocabulary

RELEASE = "op"
FULLNAME = f"{RELEASE}-jobqueue-operator"


@dataclass
class RunningOperator:
    cluster: devenv.Cluster
    namespace: str
    runner: podrunner.PodRunner
    pod_logs: Path

    def host_ports(self, pod_prefix: str) -> dict[str, int]:
        """The host ports the pod runner gave the process of the first pod named
        ``pod_prefix…`` (local processes share the host network, so it remaps each pod's
        JOBQUEUE_*_PORT to a free port)."""

        def running() -> podrunner.ProcessInfo | None:
            return next(
                (
                    info
                    for info in self.runner.snapshot()
                    if info.name.startswith(pod_prefix) and info.state == "running"
                ),
                None,
            )

        info: podrunner.ProcessInfo = devenv.wait_until(
            f"a running process of pod {pod_prefix}…", running, timeout=90
        )
        return dict(info.ports)

    def leader(self) -> str:
        """The operator pod holding the Lease: the one that acts (a standby serves /metrics
        too, with the autoscaler's metric families registered but never moving)."""

        def holder() -> str | None:
            lease = get_json(self.cluster, "lease", FULLNAME, "-n", self.namespace)
            return (lease["spec"].get("holderIdentity") or "").rpartition("_")[0] or None

        return devenv.wait_until(
            "a leader on the Lease",
            lambda: clusterkit.exists(self.cluster, "lease", FULLNAME, "-n", self.namespace) and holder(),
            timeout=90,
        )

    @property
    def metrics_port(self) -> int:
        return self.host_ports(self.leader())["JOBQUEUE_METRICS_PORT"]

    @property
    def health_port(self) -> int:
        return self.host_ports(FULLNAME)["JOBQUEUE_HEALTH_PORT"]

    def http(self, port: int, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}"
            for p in sorted(self.pod_logs.rglob("*operator*.log"))
        )


#: The job module the test's worker imports (the samples' `glec_jobs`, reduced to what the
#: dashboard needs: a success, a failure, a slow job).
JOB_MODULE = """
import time

from jobqueue import job


@job
def daily_aggregate(aggregation_type="daily"):
    return aggregation_type


@job
def broken():
    raise RuntimeError("this job always fails")


@job
def sleepy(seconds):
    time.sleep(seconds)
"""


@pytest.fixture
def running_operator(
    request: pytest.FixtureRequest,
    *,
    cluster: devenv.Cluster,
    helm: clusterkit.Helm,
    make_namespace: Callable[..., str],
    redis_url: str,
    tmp_path: Path,
) -> Iterator[RunningOperator]:
    """The chart installed with the test's Redis, and a pod runner for the release namespace
    only (so it runs neither other tests' pods nor theirs ours). Namespaced mode (watching its
    own namespace) unless the test asks for "cluster-wide" (indirect parametrisation)."""
    cluster_wide = getattr(request, "param", "namespaced") == "cluster-wide"
    # "restricted" Pod Security: the operator pod and the worker pods it creates must pass it
    namespace = make_namespace(
        labels={"pod-security.kubernetes.io/enforce": "restricted", podrunner.PRIVATE_NAMESPACE_LABEL: "true"}
    )
    helm.install(
        RELEASE,
        namespace,
        values={
            "watchNamespaces": [] if cluster_wide else [namespace],
            "redis": {"url": redis_url, "isolation": "none"},  # a Redis without password: one tenant
            "operator": {"logFormat": "plain", "resyncSeconds": 5},
        },
    )
    pylib = tmp_path / "pylib"
    pylib.mkdir()
    (pylib / "glec_jobs.py").write_text(JOB_MODULE)
    # process mode: the workers import the reduced job module above from the host
    config = podrunner.Config(
        kubeconfig=cluster.kubeconfig,
        namespace=namespace,
        pythonpath=(pylib,),
        state_dir=tmp_path / "pods",
        backoff_initial=1.0,
        backoff_max=4.0,
        shutdown_grace=10.0,
        mode="process",
    )
    with podrunner.PodRunner(config) as runner:
        yield RunningOperator(cluster, namespace, runner, tmp_path / "pods")


def sample_queue(name: str) -> dict[str, Any]:
    docs = chartkit.load_all((chartkit.ROOT / "manifests" / "samples" / "jobqueues.yaml").read_text())
    (queue,) = [d for d in docs if d["metadata"]["name"] == name]
    return queue


@pytest.mark.parametrize("running_operator", ["namespaced", "cluster-wide"], indirect=True)
def test_operator_becomes_live_and_reconciles_a_sample_queue(
    cluster: devenv.Cluster, running_operator: RunningOperator, redis_url: str
) -> None:
    op = running_operator
    try:
        status, body = devenv.wait_until(
            "the operator's /healthz", lambda: op.http(op.health_port, "/healthz"), timeout=90
        )
        assert status == 200, body
        _, metrics = op.http(op.metrics_port, "/metrics")
        assert f"{metricnames.OPERATOR_INFO}{{" in metrics

        queue = sample_queue("ei-update")
        cluster.kubectl("apply", "-n", op.namespace, "-f", "-", input=yaml.safe_dump(queue))

        def reconciled() -> dict[str, Any] | None:
            jq = get_json(cluster, "jobqueues", "ei-update", "-n", op.namespace)
            done = jq.get("status", {}).get("observedGeneration") == jq["metadata"]["generation"]
            return jq if done else None

        try:
            jq = devenv.wait_until("JobQueue ei-update reconciled", reconciled, timeout=60)
        except TimeoutError:
            print(json.dumps(get_json(cluster, "jobqueues", "ei-update", "-n", op.namespace), indent=1))
            raise
        # (cluster-wide, the JobQueue of the other parametrisation may still be in its namespace,
        # being deleted, holding the queue name: no workers until a sweep sees it gone)
        worker = devenv.wait_until(
            "the worker Deployment",
            lambda: (
                clusterkit.exists(cluster, "deployment", "ei-update-worker", "-n", op.namespace)
                and get_json(cluster, "deployment", "ei-update-worker", "-n", op.namespace)
            ),
            timeout=90,
        )
        (owner,) = worker["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner.get("controller")) == ("JobQueue", "ei-update", True)
        container = worker["spec"]["template"]["spec"]["containers"][0]
        # the default Redis URL: in the Secret the operator wrote with the chart's RBAC, not in
        # the Deployment
        secret = get_json(cluster, "secret", "jobqueue-default-redis", "-n", op.namespace)
        assert base64.b64decode(secret["data"]["url"]).decode() == redis_url
        assert redis_url not in json.dumps(worker)
        assert {
            "name": "JOBQUEUE_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": "jobqueue-default-redis", "key": "url"}},
        } in container["env"]
        assert "ei:update" in [*container.get("command", []), *container.get("args", [])]
        conditions = {c["type"]: c for c in jq["status"].get("conditions", [])}
        assert conditions["RedisReachable"]["status"] == "True", conditions
        # the worker pods were admitted by the namespace's "restricted" Pod Security
        selector = "jobqueue.glec.io/jobqueue=ei-update"
        pods = devenv.wait_until(
            "a worker pod",
            lambda: get_json(cluster, "pods", "-n", op.namespace, "-l", selector)["items"],
            timeout=60,
        )
        assert pods[0]["spec"]["securityContext"]["runAsNonRoot"] is True
    except BaseException:
        print(op.logs())  # the operator's own log explains most failures
        raise


def test_operator_is_held_to_the_chart_rbac(
    cluster: devenv.Cluster, running_operator: RunningOperator
) -> None:
    """A JobQueue naming a Redis Secret outside ``rbac.redisSecretNames``: the operator's read
    is refused by the API server, and the operator reports it as a Warning Event (which the
    chart's RBAC lets it post)."""
    op = running_operator
    devenv.wait_until("the operator's /healthz", lambda: op.http(op.health_port, "/healthz"), timeout=90)
    queue = sample_queue("cleanup")
    queue["spec"]["redis"] = {"urlSecretRef": {"name": "not-allowed-redis", "key": "url"}}
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "not-allowed-redis",
        "-n",
        op.namespace,
        "--from-literal=url=redis://127.0.0.1:1/0",
    )
    cluster.kubectl("apply", "-n", op.namespace, "-f", "-", input=yaml.safe_dump(queue))

    def warned() -> list[dict[str, Any]]:
        events = get_json(
            cluster, "events", "-n", op.namespace, "--field-selector", "involvedObject.name=cleanup"
        )["items"]
        return [e for e in events if e["type"] == "Warning"]

    try:
        events = devenv.wait_until("a Warning event on JobQueue cleanup", warned, timeout=90)
    except BaseException:
        print(op.logs())
        raise
    # the API server refused the read: the operator holds no permission beyond the chart's
    assert any("not-allowed-redis" in e["message"] and "forbidden" in e["message"] for e in events), (
        json.dumps([(e["reason"], e["message"]) for e in events], indent=1)
    )


#: Metrics of the autoscaler (queue depth, oldest job, desired replicas, scaling decisions,
#: Redis reachability, poll and cycle timing), which lands separately from the rest of the
#: operator: a query reading only these is skipped while the operator does not register
#: them (no `# TYPE` line on its /metrics), and checked as soon as it does.
POLLER = {
    metricnames.QUEUE_JOBS,
    metricnames.QUEUE_OLDEST_JOB_AGE_SECONDS,
    metricnames.QUEUE_WORKERS,
    metricnames.DESIRED_REPLICAS,
    metricnames.SCALING_DECISIONS,
    metricnames.POLL_DURATION_SECONDS,
    metricnames.REDIS_UP,
    metricnames.AUTOSCALER_CYCLE_SECONDS,
}
#: Series that exist only after a fault: a worker pod killed while running a job (lost-job
#: recovery) and a failed poll of Redis are injected at the end of the test (where the
#: operator registers those metrics); a failed Kubernetes API call of the autoscaler is not
#: (its query is checked by promtool only).
NEEDS_FAULT = {metricnames.LOST_JOBS_RECOVERED, metricnames.POLL_ERRORS, metricnames.AUTOSCALER_API_ERRORS}


def registered(exposition: str, names: set[str]) -> set[str]:
    """The metric names an exposition declares (counters may be typed without `_total`)."""
    return {
        n
        for n in names
        if re.search(
            rf"^# TYPE {re.escape(n.removesuffix('_total'))}(_total)? ", exposition, flags=re.MULTILINE
        )
    }


def check_queries(prometheus: devenv.PrometheusServer, select: Callable[[set[str]], bool]) -> list[str]:
    """Every dashboard query whose metric names ``select`` accepts must return data; return them."""
    board = json.loads(generate.dashboard_json())
    missing: dict[str, list[str]] = {}
    checked = []
    for title, exprs in dashboardkit.panel_queries(board).items():
        for expr in exprs:
            if not select(vocabulary.base_names_in(expr)):
                continue
            checked.append(expr)
            try:
                prometheus.wait_for_sample(concrete(expr), timeout=60)
            except TimeoutError:
                missing.setdefault(title, []).append(expr)
    assert missing == {}, json.dumps(missing, indent=1)
    return checked


def concrete(expr: str) -> str:
    """A dashboard query as Grafana sends it with "All" selected."""
    return expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$queue", ".*")


def test_prometheus_scrapes_the_operator_and_a_worker_and_dashboard_queries_return_data(
    cluster: devenv.Cluster,
    running_operator: RunningOperator,
    redis_url: str,
    redis_server: devenv.RedisServer,
    prometheus: devenv.PrometheusServer,
) -> None:
    op = running_operator
    devenv.wait_until("the operator's /healthz", lambda: op.http(op.health_port, "/healthz"), timeout=90)
    _, exposition = op.http(op.metrics_port, "/metrics")
    exposed = registered(exposition, POLLER | NEEDS_FAULT)
    queue = sample_queue("ei-update")
    # no worker until there is work: the first jobs make the autoscaler scale up (a scaling
    # decision); without an autoscaler, one worker from the start. At most one worker, so
    # one scrape target.
    autoscaler = metricnames.SCALING_DECISIONS in exposed
    queue["spec"]["scaling"] = {"minReplicas": 0 if autoscaler else 1, "maxReplicas": 1}
    queue["spec"]["jobDefaults"] = {"attempts": 2, "backoff": {"type": "fixed", "delaySeconds": 0.2}}
    cluster.kubectl("apply", "-n", op.namespace, "-f", "-", input=yaml.safe_dump(queue))
    conn = redis.Redis.from_url(redis_url)
    devenv.wait_until(
        "queue settings published",
        lambda: "ei:update" in queue_settings.published_queue_names(conn),
        timeout=60,
    )
    # a settings entry no JobQueue declares: the operator's sweep removes it (and counts it)
    queue_settings.publish(conn, queue_settings.QueueSettings(queue_name="orphan:queue"))
    prometheus.add_target("jobqueue-operator", f"127.0.0.1:{op.metrics_port}")
    try:
        prometheus.wait_for_sample('up{job="jobqueue-operator"} == 1', timeout=60)
        for _ in range(5):
            jobqueue.enqueue("ei:update", "glec_jobs.daily_aggregate", connection=conn)
        jobqueue.enqueue("ei:update", "glec_jobs.broken", connection=conn)  # retried, then failed
        jobqueue.enqueue("ei:update", "glec_jobs.sleepy", 5, timeout_seconds=1, attempts=1, connection=conn)
        jobqueue.enqueue("ei:update", "glec_jobs.not_registered", connection=conn)  # rejected by the worker

        # the autoscaler starts a worker, which joins the queue (an RQ worker record in this
        # test's own Redis database)
        devenv.wait_until(
            "a worker on the queue",
            lambda: jobqueue.queue_stats("ei:update", connection=conn).workers,
            timeout=90,
        )
        # its port: remapped by the pod runner when the pod passes JOBQUEUE_METRICS_PORT, else
        # the pod's own --metrics-port 9100
        worker_port = op.host_ports("ei-update-worker-").get("JOBQUEUE_METRICS_PORT", 9100)
        prometheus.add_target("jobqueue-worker", f"127.0.0.1:{worker_port}")
        prometheus.wait_for_sample('up{job="jobqueue-worker"} == 1', timeout=90)
        # every outcome has been counted by the worker and scraped
        for metric, count in ((metricnames.JOBS_SUCCEEDED, 5), (metricnames.JOBS_FAILED, 3)):
            prometheus.wait_for_sample(f'sum({metric}{{job="jobqueue-worker"}}) >= {count}', timeout=60)

        not_yet = (POLLER - exposed) | NEEDS_FAULT
        checked = check_queries(prometheus, lambda names: not names <= not_yet)
        # at least: worker throughput, failures, retries, timeouts, rejections, latencies,
        # slots; operator replicas, reconciles, orphan sweep, versions
        assert len(checked) >= 20, checked

        # faults, where the operator reports them: a worker pod killed while it runs a job
        # (the operator recovers the job) …
        if metricnames.LOST_JOBS_RECOVERED in exposed:
            jobqueue.enqueue("ei:update", "glec_jobs.sleepy", 120, connection=conn)
            devenv.wait_until(
                "the slow job running",
                lambda: jobqueue.queue_stats("ei:update", connection=conn).running,
                timeout=60,
            )
            (pod,) = get_json(
                cluster, "pods", "-n", op.namespace, "-l", "jobqueue.glec.io/jobqueue=ei-update"
            )["items"]
            cluster.kubectl(
                "delete", "pod", pod["metadata"]["name"], "-n", op.namespace, "--grace-period=0", "--force"
            )
            checked = check_queries(prometheus, lambda names: metricnames.LOST_JOBS_RECOVERED in names)
            assert len(checked) == 1, checked
        # … and, once that is done, Redis frozen for longer than the operator's Redis timeout
        if metricnames.POLL_ERRORS in exposed:
            redis_server.pause()
            try:
                time.sleep(5)
            finally:
                redis_server.resume()
            checked = check_queries(prometheus, lambda names: metricnames.POLL_ERRORS in names)
            assert len(checked) == 1, checked
    except BaseException:
        print(op.logs())
        raise
    finally:
        prometheus.remove_job("jobqueue-operator")
        prometheus.remove_job("jobqueue-worker")
        conn.close()
