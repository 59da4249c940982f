"""Helpers for the admin API tests: a real `jobqueue api` process, real tokens, plain HTTP.

The server runs as the CLI runs it (``python -m jobqueue.cli api``) with the session
cluster's admin kubeconfig, so its TokenReview and SubjectAccessReview calls go to the real
kube-apiserver; callers authenticate as ServiceAccounts of the test's namespace, whose
permissions come from real Roles.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

import devenv
from jobqueue import settings

ROOT = Path(__file__).resolve().parents[3]
JOBS = "integration.workers.wjobs"
GROUP = "jobqueue.glec.io"
#: What an operator of the queues may do: read, enqueue, retry/remove, pause/resume.
OPERATOR_RULES = [
    {"apiGroups": [GROUP], "resources": ["jobqueues"], "verbs": ["get", "list"]},
    {"apiGroups": [GROUP], "resources": ["jobqueues/jobs"], "verbs": ["create", "update"]},
    {"apiGroups": [GROUP], "resources": ["jobqueues/pause"], "verbs": ["update"]},
]
VIEWER_RULES = [{"apiGroups": [GROUP], "resources": ["jobqueues"], "verbs": ["get", "list"]}]


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return Response(reply.status, _json(reply.read()), dict(reply.headers))
        except urllib.error.HTTPError as err:
            return Response(err.code, _json(err.read()), dict(err.headers))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


@contextlib.contextmanager
def api_server(
    redis_url: str,
    kubeconfig: str | None,
    tmp_path: Path,
    *,
    auth: str = "kubernetes",
) -> Iterator[ApiServer]:
    port = devenv.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBQUEUE_")}
    code = [str(ROOT / "workers"), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    env |= {"JOBQUEUE_REDIS_URL": redis_url, "PYTHONPATH": os.pathsep.join(p for p in code if p)}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    log = tmp_path / f"api-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "api", "--port", str(port), "--auth", auth],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(f"http://127.0.0.1:{port}", proc, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jobqueue api exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return server.call("GET", "/healthz").status == 200
        except OSError:
            return False

    try:
        devenv.wait_until("jobqueue api /healthz", up, timeout=30)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def service_account(
    cluster: devenv.Cluster, namespace: str, name: str, rules: list[dict[str, Any]] | None
) -> str:
    """A ServiceAccount with a Role of ``rules`` (none: no permission at all); its token."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    if rules is not None:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}),
        )
    return cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()


def declare(conn: redis.Redis, queue: str, namespace: str, jobqueue: str, **job_defaults: Any) -> None:
    """Publish a queue as the operator does for JobQueue ``namespace/jobqueue``."""
    settings.publish(
        conn,
        settings.QueueSettings.model_validate(
            {
                "queueName": queue,
                "namespace": namespace,
                "jobqueue": jobqueue,
                "priority": 2,
                "concurrency": 4,
                "imports": [JOBS],
                "jobDefaults": job_defaults,
            }
        ),
    )


def redis_state(conn: redis.Redis) -> dict[bytes, Any]:
    """Every key with its content: to show that a refused request changed nothing."""
    readers: dict[bytes, Any] = {
        b"string": conn.get,
        b"list": lambda k: conn.lrange(k, 0, -1),
        b"hash": conn.hgetall,
        b"set": conn.smembers,
        b"zset": lambda k: conn.zrange(k, 0, -1, withscores=True),
        b"stream": conn.xrange,
    }
    return {key: readers[conn.type(key)](key) for key in sorted(conn.keys("*"))}
