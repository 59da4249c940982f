"""Shared set-up of the end-to-end and chaos benchmarks: the product installed as users install it.

The scenarios themselves live beside their tests (``tests/integration/e2e/e2edrain.py`` and
``chaoskit.py``), so a benchmark measures exactly what its test checks. This module gives them
what the pytest fixtures give the tests: a cluster (``JOBQUEUE_BENCH_KUBECONFIG`` or a fresh
one), a Redis of its own, a pod runner for one namespace that enforces the ``restricted`` Pod
Security Standard, and the chart installed there (``helm install``, the operator pod held to
the chart's RBAC). The scenario modules are re-exported (``el.chaoskit``, ``el.e2edrain``):
they can be imported only once this module has put the tests' folders on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import operator_benchlib as bl

for _p in (bl.ROOT / "tests", bl.ROOT / "tests" / "integration", bl.ROOT / "tests" / "integration" / "e2e"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import chaoskit  # noqa: E402
import e2edrain  # noqa: E402
import redis  # noqa: E402
from e2ekit import Product, load  # noqa: E402

import devenv  # noqa: E402
import images  # noqa: E402
import podrunner  # noqa: E402
import podrunner_containers  # noqa: E402
import testimages  # noqa: E402

__all__ = ["Installed", "chaoskit", "conclude", "e2edrain", "installed", "load"]


@dataclass
class Installed:
    cluster: devenv.Cluster
    redis_server: devenv.RedisServer
    conn: redis.Redis
    namespace: str
    runner: podrunner.PodRunner
    product: Product


@contextlib.contextmanager
def installed(
    label: str,
    *,
    values: Mapping[str, Any] | None = None,
    environment: tuple[devenv.Cluster, devenv.RedisServer] | None = None,
    mode: podrunner.Mode = "auto",
) -> Iterator[Installed]:
    """The chart installed in a new namespace ``bench-<label>-…``; ``values``: chart values
    beyond the Redis URL and the watched namespace. ``environment``: reuse a cluster and Redis
    (several runs in one benchmark), else a new one for this run alone. ``mode``: the pod
    runner's (container mode runs the images ``make image`` builds; they are built if needed)."""
    if mode != "process" and podrunner_containers.problem() is None:
        images.Builder(images.Store()).build(list(testimages.ALL), specs=testimages.ALL)
    with contextlib.ExitStack() as stack:
        cluster, redis_server = environment or stack.enter_context(bl.environment())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        namespace = f"bench-{label}-{uuid.uuid4().hex[:4]}"
        cluster.create_namespace(namespace)
        cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
        stack.callback(cluster.kubectl, "delete", "namespace", namespace, "--wait=false", check=False)
        conn = redis.Redis.from_url(redis_server.url)
        conn.flushdb()
        config = podrunner.Config(
            kubeconfig=cluster.kubeconfig,
            namespace=namespace,
            pythonpath=(bl.ROOT / "tests",),
            state_dir=tmp / "pods",
            shutdown_grace=10.0,
            mode=mode,
        )
        runner = stack.enter_context(podrunner.PodRunner(config))
        bl.log(f"installing the chart in {namespace}")
        product = Product.install(
            cluster,
            namespace,
            runner,
            redis_url=redis_server.url,
            release=f"jq-{namespace[-4:]}",
            values=values,
        )
        stack.callback(product.uninstall)
        yield Installed(cluster, redis_server, conn, namespace, runner, product)


def conclude(result: dict[str, Any], goal: str, ok: bool) -> None:
    """Print whether ``goal`` was met, then the result as the last line (JSON)."""
    print(f"goal: {goal} → {'met' if ok else 'NOT met'}")
    result["goal_met"] = ok
    bl.emit(result)
