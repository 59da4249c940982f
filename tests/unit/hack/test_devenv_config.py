"""The kwokctl configuration hack/devenv.py writes: the components' extra flags.

That kwokctl starts the components with them is tests/integration/test_environment.py."""

from __future__ import annotations

from pathlib import Path

import yaml

import devenv


def patches(cluster: devenv.Cluster) -> dict[str, dict[str, str]]:
    text = cluster._front_proxy_patch() + cluster._controller_manager_patch()
    return {
        p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]}
        for p in yaml.safe_load(text)["componentsPatches"]
    }


def cluster(**kwargs: int) -> devenv.Cluster:
    return devenv.Cluster("unit", devenv.Binaries(Path("/nonexistent"), Path("/nonexistent")), **kwargs)


def test_controller_manager_keeps_its_default_rate_unless_asked() -> None:
    assert set(patches(cluster())) == {"kube-apiserver"}


def test_controller_manager_rate_is_a_string_flag_with_half_again_the_burst() -> None:
    got = patches(cluster(controller_qps=200))
    # kwokctl's extraArgs values are strings: an unquoted 200 would not parse
    assert got["kube-controller-manager"] == {"kube-api-qps": "200", "kube-api-burst": "300"}
    assert got["kube-apiserver"]["requestheader-allowed-names"] == "kwok-admin"
