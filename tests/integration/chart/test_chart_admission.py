"""The chart's admission guard rails on the real API server (issue 20).

Creating a JobQueue is in effect creating pods in its namespace: the optional
ValidatingAdmissionPolicies let a cluster admin allow-list images, ServiceAccounts, Secret
references, pod annotation keys and job modules. Rendered with the real helm, applied to the
real kube-apiserver (which type-checks the CEL and enforces it), bound to this test's
namespace only (the cluster is shared by every test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opkit import jobqueue
from recurring.rjkit import recurringjob

import devenv
from unit.chart import chartkit

GUARD_LABEL = "jobqueue-tests/guarded"
ALLOWED = {
    "allowedImagePrefixes": ["registry.example/glec-jobs:", "registry.example/shared/"],
    "allowedServiceAccounts": ["jobs-runner"],
    "allowedSecrets": ["app-config", "regcred", "jobqueue-redis"],
    "allowedPodAnnotationKeys": ["example.com/", "team"],
    "allowedModulePrefixes": ["glec"],
}
GOOD_WORKER = {
    "image": "registry.example/glec-jobs:1.4.2",
    "imports": ["glec.jobs", "glec"],
    "serviceAccountName": "jobs-runner",
    "env": [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-config", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "anything", "key": "mode"}}},
        {"name": "PLAIN", "value": "x"},
    ],
    "envFrom": [{"secretRef": {"name": "app-config"}}, {"configMapRef": {"name": "anything"}}],
    "imagePullSecrets": [{"name": "regcred"}],
    "podAnnotations": {"example.com/owner": "team-a", "team": "a"},
}


@pytest.fixture
def guarded(cluster: devenv.Cluster, namespace: str, crds: None) -> Iterator[str]:
    """The chart's policies (every list set), bound to ``namespace`` alone."""
    cluster.kubectl("label", "namespace", namespace, f"{GUARD_LABEL}={namespace}")
    selector = {"matchLabels": {GUARD_LABEL: namespace}}
    values = {"admissionPolicy": {"enabled": True, "namespaceSelector": selector, **ALLOWED}}
    release = f"g{namespace[-5:]}"
    rendered = chartkit.run_helm(
        cluster.binaries.path("helm"),
        "template",
        release,
        str(chartkit.CHART),
        "--show-only",
        "templates/admission-policy.yaml",
        values=values,
    ).stdout
    objects = chartkit.load_all(rendered)
    assert (
        sorted(o["kind"] for o in objects)
        == ["ValidatingAdmissionPolicy"] * 2 + ["ValidatingAdmissionPolicyBinding"] * 2
    )
    cluster.kubectl("apply", "-f", "-", input=rendered)
    try:
        for policy in [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]:
            body = json.loads(
                cluster.kubectl(
                    "get", "validatingadmissionpolicy", policy["metadata"]["name"], "-o", "json"
                ).stdout
            )
            # the API server type-checked every expression against the CRD's schema
            assert not (body.get("status", {}).get("typeChecking") or {}).get("expressionWarnings"), body
        wait_enforced(cluster, namespace)
        yield namespace
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=rendered, check=False)


def wait_enforced(cluster: devenv.Cluster, namespace: str) -> None:
    """Policies reach the API server's admission through its informers: wait until a refused
    object is really refused."""
    probe = jobqueue("probe", namespace, worker={**GOOD_WORKER, "image": "docker.io/evil:1"})
    devenv.wait_until(
        "the policy enforced",
        lambda: "not from an allowed registry" in create(cluster, probe, dry_run=True),
        timeout=60,
    )


def create(cluster: devenv.Cluster, body: dict[str, Any], *, dry_run: bool = False) -> str:
    """'' if the API server accepted ``body``, else its message."""
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    result = cluster.kubectl(*args, input=json.dumps(body), check=False)
    return "" if result.returncode == 0 else result.stderr


def test_allowed_objects_are_created(cluster: devenv.Cluster, guarded: str) -> None:
    assert create(cluster, jobqueue("good", guarded, worker=GOOD_WORKER)) == ""
    minimal = {"image": "registry.example/shared/base:2", "imports": ["glec.reports"]}  # no SA: the default
    assert (
        create(
            cluster,
            jobqueue(
                "minimal",
                guarded,
                worker=minimal,
                redis={"urlSecretRef": {"name": "jobqueue-redis", "key": "url"}},
            ),
        )
        == ""
    )
    assert (
        create(cluster, recurringjob("nightly", guarded, queue="good", function="glec.jobs.daily_aggregate"))
        == ""
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"image": "docker.io/library/python:3.12"},
            "spec.worker.image docker.io/library/python:3.12 is not from an allowed registry",
        ),
        (
            {"image": "registry.example/glec-jobs-evil:1"},
            "is not from an allowed registry",
        ),  # not a lookalike
        (
            {"serviceAccountName": "cluster-admin-sa"},
            "spec.worker.serviceAccountName cluster-admin-sa is not an allowed ServiceAccount",
        ),
        (
            {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "db-root", "key": "password"}}}]},
            "spec.worker.env: a secretKeyRef names a Secret that is not allowed",
        ),
        (
            {"envFrom": [{"secretRef": {"name": "db-root"}}]},
            "spec.worker.envFrom: a secretRef names a Secret",
        ),
        (
            {"imagePullSecrets": [{"name": "other-team-regcred"}]},
            "spec.worker.imagePullSecrets names a Secret",
        ),
        (
            {"podAnnotations": {"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}},
            "container.apparmor.security.beta.kubernetes.io/worker not allowed",
        ),
        ({"imports": ["glec.jobs", "os"]}, "spec.worker.imports: a module is outside the allowed packages"),
        ({"imports": ["glecx"]}, "outside the allowed packages"),
    ],
)
def test_refused_jobqueues_say_which_field_and_why(
    cluster: devenv.Cluster, guarded: str, change: dict[str, Any], says: str
) -> None:
    message = create(cluster, jobqueue("bad", guarded, worker={**GOOD_WORKER, **change}))
    assert says in message, message
    assert "denied request" in message or "ValidatingAdmissionPolicy" in message


def test_refused_secret_and_function_references(cluster: devenv.Cluster, guarded: str) -> None:
    message = create(
        cluster,
        jobqueue(
            "bad",
            guarded,
            worker=GOOD_WORKER,
            redis={"urlSecretRef": {"name": "someone-elses-redis", "key": "url"}},
        ),
    )
    assert "spec.redis.urlSecretRef names a Secret that is not allowed" in message
    message = create(cluster, recurringjob("bad", guarded, queue="good", function="os.system"))
    assert "spec.function os.system is outside the allowed packages" in message
    # an update is checked as well as a create
    assert create(cluster, jobqueue("later", guarded, worker=GOOD_WORKER)) == ""
    patch = json.dumps({"spec": {"worker": {"image": "docker.io/evil:1"}}})
    result = cluster.kubectl(
        "patch", "jobqueue", "later", "-n", guarded, "--type=merge", "-p", patch, check=False
    )
    assert result.returncode != 0
    assert "not from an allowed registry" in result.stderr


def test_other_namespaces_are_not_bound(cluster: devenv.Cluster, guarded: str, crds: None) -> None:
    other = f"{guarded[:50]}-free"
    cluster.create_namespace(other)
    try:
        anything = {**GOOD_WORKER, "image": "docker.io/x:1"}
        assert create(cluster, jobqueue("free", other, worker=anything)) == ""
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
