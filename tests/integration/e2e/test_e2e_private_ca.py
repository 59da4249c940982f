"""A Redis behind TLS with a certificate of a private CA (issue 22): the chart's
``extraObjects`` ships the CA as a Secret, ``extraVolumes``/``extraVolumeMounts`` mount it into
the operator pod, and the default Redis URL names the file (``rediss://…?ssl_ca_certs=…``), as
docs/operations.md tells users to. The operator pod runs in its image under runc (the session
pod runner's container mode, which writes the Secret volume as the kubelet would): nothing of
the host's is visible to it but what the chart mounted.

A real ``redis-server`` serves TLS only; the CA is in no trust store, so without it the
connection is refused (checked from the host, the same client library).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from e2ekit import Product, apply_queue, queue_body
from opkit import wait_condition

import devenv
import podrunner
import podrunner_containers
import redisfarm

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.redis]

CA_DIR = "/etc/jobqueue/redis-ca"


def test_the_operator_reaches_a_private_ca_redis_through_the_mounted_ca(
    cluster: devenv.Cluster, namespace: str, pod_runner: podrunner.PodRunner, crds: None, tmp_path: Path
) -> None:
    assert podrunner_containers.problem() is None, "this test needs the pod runner's container mode"
    tls = redisfarm.make_certificates(tmp_path / "tls")
    server = redisfarm.tls_server(tls)
    url = f"rediss://127.0.0.1:{server.port}/0"
    try:
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            redis.Redis.from_url(url).ping()  # the CA is trusted nowhere by default
        host_conn = redis.Redis.from_url(f"{url}?ssl_ca_certs={tls.ca}")
        cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
        product = Product.install(
            cluster,
            namespace,
            pod_runner,
            release=f"ca-{namespace[-5:]}",
            redis_url=f"{url}?ssl_ca_certs={CA_DIR}/ca.crt",
            values={
                "extraObjects": [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "{{ .Release.Name }}-redis-ca"},
                        "stringData": {"ca.crt": tls.ca.read_text()},
                    }
                ],
                "extraVolumes": [
                    {"name": "redis-ca", "secret": {"secretName": f"ca-{namespace[-5:]}-redis-ca"}}
                ],
                "extraVolumeMounts": [{"name": "redis-ca", "mountPath": CA_DIR, "readOnly": True}],
            },
        )
        try:
            leader = product.operator_process(product.wait_live())
            assert leader is not None
            assert leader.container is not None  # in its image, not on the host
            # the queue's settings published in the TLS Redis (apply_queue waits for them) …
            apply_queue(cluster, host_conn, queue_body("tls", namespace, concurrency=1, per_pod=1))
            # … and the operator's own check of the queue's Redis
            wait_condition(cluster, "tls", namespace, "RedisReachable", status="True", timeout=60)
        except BaseException:
            print(product.logs())
            raise
        finally:
            product.uninstall()
    finally:
        server.stop()
