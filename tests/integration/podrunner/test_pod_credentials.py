"""A pod with a ServiceAccount runs with a token of exactly that ServiceAccount: the API server
reports its identity, enforces its RBAC, and the token is replaced before it expires."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from podrunner_lab import Lab, state_of

import devenv
import podrunner

# Reports who the API server thinks the process is, and what it may do — through kubectl
# (client-go: tokenFile) and through lightkube (Python), each reading $KUBECONFIG.
PROBE = r"""
k="$KUBECTL"
"$k" auth whoami -o jsonpath='{.status.userInfo.username}' > "$OUT/whoami" 2>&1
"$k" get configmaps -o name > "$OUT/configmaps" 2>&1; echo $? > "$OUT/configmaps.rc"
"$k" get secrets -o name > "$OUT/secrets" 2>&1; echo $? > "$OUT/secrets.rc"
python -c 'from lightkube import Client; from lightkube.resources.core_v1 import ConfigMap
print(" ".join(sorted(c.metadata.name for c in Client().list(ConfigMap))))' > "$OUT/lightkube" 2>&1
touch "$OUT/done"
"""

RBAC: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader"}],
    },
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "visible"}, "data": {"k": "v"}},
]


def read(out: Path, name: str) -> str:
    return (out / name).read_text().strip()


def test_the_process_acts_as_its_service_account(
    lab: Lab, runner: podrunner.PodRunner, binaries: devenv.Binaries
) -> None:
    lab.apply(*RBAC)
    lab.apply(
        lab.pod(
            "probe",
            ["sh", "-c", PROBE],
            serviceAccountName="reader",
            restartPolicy="Never",
            env=[{"name": "KUBECTL", "value": binaries.path("kubectl")}],
        )
    )
    lab.wait("the probe to finish", (lab.out / "done").exists)

    assert read(lab.out, "whoami") == f"system:serviceaccount:{lab.namespace}:reader"
    # the kubeconfig's namespace is the pod's, as in-cluster config would have it
    assert read(lab.out, "configmaps.rc") == "0"
    assert "configmap/visible" in read(lab.out, "configmaps").split()
    assert read(lab.out, "secrets.rc") != "0"
    assert "forbidden" in read(lab.out, "secrets")
    assert "visible" in read(lab.out, "lightkube").split()


@pytest.fixture
def fast_refresh(runner_config: podrunner.Config) -> podrunner.Config:
    # the API server's shortest token is 10 minutes; replace it after 1 % of that (6 s)
    return podrunner.Config(**{**runner_config.__dict__, "token_seconds": 600, "token_refresh": 0.01})


def test_the_token_is_replaced_before_it_expires(
    lab: Lab, fast_refresh: podrunner.Config, binaries: devenv.Binaries
) -> None:
    lab.apply(*RBAC)
    # a long-lived client: every half second, snapshot the kubeconfig and ask who it is
    loop = r"""
    while :; do
      cp "$KUBECONFIG" "$OUT/kubeconfig.now"
      "$KUBECTL" auth whoami -o jsonpath='{.status.userInfo.username}' > "$OUT/whoami.tmp" 2>&1
      mv "$OUT/whoami.tmp" "$OUT/whoami.now"
      sleep 0.5
    done
    """
    reader = f"system:serviceaccount:{lab.namespace}:reader"
    with podrunner.PodRunner(fast_refresh) as runner:
        lab.apply(
            lab.pod(
                "longlived",
                ["sh", "-c", loop],
                serviceAccountName="reader",
                env=[{"name": "KUBECTL", "value": binaries.path("kubectl")}],
            )
        )

        def token() -> str | None:
            try:
                conf = yaml.safe_load(read(lab.out, "kubeconfig.now"))
            except FileNotFoundError:
                return None
            return str(conf["users"][0]["user"]["token"]) if conf else None

        first = lab.wait("the first token", token)
        lab.wait("a replacement token", lambda: (t := token()) and t != first)
        refreshed_at = time.time()
        # the rewritten kubeconfig is valid, and the same process keeps using it successfully
        whoami = lab.cluster.kubectl(
            "--kubeconfig",
            str(lab.out / "kubeconfig.now"),
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ).stdout
        assert whoami == reader
        lab.wait(
            "the process to ask again after the refresh",
            lambda: (lab.out / "whoami.now").stat().st_mtime > refreshed_at,
        )
        assert read(lab.out, "whoami.now") == reader
        info = state_of(runner, "longlived")
        assert info is not None
        assert info.starts == 1
