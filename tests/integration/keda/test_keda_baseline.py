"""The baseline of the autoscaling benchmarks is the real KEDA, and it really works here.

KEDA 2.21 built from its Go module (hack/keda.py) scales a Deployment of plain ``rq worker``
pods (run by the session's pod runner, in the project's image or as processes) with a
ScaledObject on the queue's Redis list: from 0 to 1 by KEDA's own activation, to the needed
count by the real kube-controller-manager's HPA reading KEDA's metric through the API server's
aggregation layer, and back to 0 by KEDA's cooldown. If any link breaks (the build, the
APIService, the front-proxy certificates, the HPA), this fails — so the benchmarks' KEDA
figures cannot silently become figures of a KEDA that never scaled. Opt-in: ``make test-keda``
(see tests/integration/keda/conftest.py).
"""

from __future__ import annotations

import json

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

import devenv
import images
import keda
from integration.scaling.scalekit import ReplicaWatch

pytestmark = pytest.mark.keda

JOBS = 40
JOB_SECONDS = 3
LIST_LENGTH = 5
MAX_REPLICAS = 4


@pytest.mark.usefixtures("running_keda", "pod_runner")
def test_keda_scales_plain_rq_workers_from_zero_to_the_needed_count_and_back(
    cluster: devenv.Cluster,
    namespace: str,
    redis_server: devenv.RedisServer,
    redis_url: str,
    redis_conn: redis.Redis,
) -> None:
    name, queue = "plain-rq", "plain"
    database = int(redis_url.rsplit("/", 1)[1])
    tuning = keda.tuned(max_replicas=MAX_REPLICAS, scale_down_delay=0, idle_before_zero=5, polling_interval=2)
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                # the project's image has rq; the jobs are time.sleep, in any Python (process mode: the venv's)
                keda.plain_rq_deployment(
                    name, namespace, queue=queue, redis_url=redis_url, image=images.OPERATOR.ref
                ),
                keda.scaled_object(
                    name,
                    namespace,
                    deployment=name,
                    redis_address=f"127.0.0.1:{redis_server.port}",
                    list_name=f"rq:queue:{queue}",
                    list_length=LIST_LENGTH,
                    max_replicas=MAX_REPLICAS,
                    database=database,
                    tuning=tuning,
                ),
            ],
        }
    )
    cluster.kubectl("apply", "-f", "-", input=body)
    cluster.kubectl(
        "wait", "--for=condition=Ready", f"scaledobject/{name}", "-n", namespace, "--timeout=60s", timeout=70
    )

    with ReplicaWatch(cluster, namespace, name) as watch:
        rq_queue = Queue(queue, connection=redis_conn, serializer=JSONSerializer)
        ids = [rq_queue.enqueue("time.sleep", JOB_SECONDS).id for _ in range(JOBS)]

        def all_finished() -> bool:
            jobs = Job.fetch_many(ids, connection=redis_conn, serializer=JSONSerializer)
            return all(j is not None and j.get_status() == JobStatus.FINISHED for j in jobs)

        devenv.wait_until(
            f"{JOBS} jobs finished by the plain RQ workers", all_finished, timeout=240, interval=1
        )
        hpa = json.loads(
            cluster.kubectl("get", "hpa", f"keda-hpa-{name}", "-n", namespace, "-o", "json").stdout
        )
        devenv.wait_until("KEDA's cooldown back to 0 replicas", lambda: watch.values[-1] == 0, timeout=90)
        values = list(watch.values)

    assert values[0] == 0, values
    # KEDA itself only ever activates to 1; anything above is the HPA acting on KEDA's metric
    assert values[1] == 1, values
    assert max(values) == MAX_REPLICAS, f"the HPA never scaled to the needed count: {values}"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": str(LIST_LENGTH)}
    conditions = {c["type"]: c["status"] for c in hpa["status"]["conditions"]}
    assert conditions.get("ScalingActive") == "True", hpa["status"]


@pytest.mark.usefixtures("running_keda")
def test_the_defaults_scaled_object_passes_kedas_schema(cluster: devenv.Cluster, namespace: str) -> None:
    # the benchmarks' other variant; the test above applies the tuned one for real
    body = keda.scaled_object(
        "plain-rq",
        namespace,
        deployment="plain-rq",
        redis_address="127.0.0.1:6379",
        list_name="rq:queue:q",
        list_length=1,
        max_replicas=20,
        tuning=keda.DEFAULTS,
    )
    out = cluster.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body))
    spec = json.loads(out.stdout)["spec"]
    assert spec["triggers"][0]["metadata"]["listName"] == "rq:queue:q"
    assert "pollingInterval" not in spec  # KEDA's default (30 s) applies
