"""What hack/keda.py builds for the KEDA baseline: the ScaledObject a user writes (KEDA's
defaults, and tuned), the plain-RQ worker Deployment it scales, and the pinned version.

That KEDA really scales them is tests/integration/keda (opt-in: ``make test-keda``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import devenv
import keda

ROOT = Path(__file__).resolve().parents[3]


def redis_scaled_object(tuning: keda.Tuning, **overrides: object) -> dict:  # type: ignore[type-arg]
    args: dict = {
        "deployment": "w",
        "redis_address": "127.0.0.1:6379",  # type: ignore[type-arg]
        "list_name": "rq:queue:jobs",
        "list_length": 4,
        "max_replicas": 25,
        "tuning": tuning,
    }
    return keda.scaled_object("so", "ns", **(args | overrides))


def test_defaults_leave_every_timing_to_keda_and_the_hpa() -> None:
    spec = redis_scaled_object(keda.DEFAULTS)["spec"]
    assert set(spec) == {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "triggers"}
    assert spec["scaleTargetRef"] == {"name": "w"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 25)


def test_the_trigger_is_the_redis_list_one_with_string_metadata() -> None:
    (trigger,) = redis_scaled_object(keda.DEFAULTS, database=3)["spec"]["triggers"]
    # KEDA's trigger metadata is map[string]string: numbers must be strings
    assert trigger == {
        "type": "redis",
        "metadata": {
            "address": "127.0.0.1:6379",
            "listName": "rq:queue:jobs",
            "listLength": "4",
            "databaseIndex": "3",
        },
    }


def test_tuned_polls_fast_jumps_in_one_step_and_keeps_the_races_delays() -> None:
    tuning = keda.tuned(max_replicas=25, scale_down_delay=10, idle_before_zero=20)
    spec = redis_scaled_object(tuning)["spec"]
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (5, 20)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert {"type": "Pods", "value": 25, "periodSeconds": 1} in behavior["scaleUp"]["policies"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 10


@pytest.mark.parametrize(("field", "value"), [("list_length", 0), ("max_replicas", 0)])
def test_a_useless_size_is_refused_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        redis_scaled_object(keda.DEFAULTS, **{field: value})


def test_plain_rq_deployment_runs_one_rq_worker_with_the_json_serializer() -> None:
    body = keda.plain_rq_deployment(
        "plain", "ns", queue="jobs", redis_url="redis://r:6379/2", image="registry.invalid/worker:1"
    )
    pod = body["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["rq", "worker"]
    args = container["args"]
    assert args[-1] == "jobs"
    assert args[args.index("--serializer") + 1] == "rq.serializers.JSONSerializer"
    assert args[args.index("--url") + 1] == "$(REDIS_URL)"
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_URL"]["value"] == "redis://r:6379/2"
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert body["spec"]["replicas"] == 0
    # the default grace period, as KEDA users run it, unless asked otherwise
    assert "terminationGracePeriodSeconds" not in pod["spec"]
    grace = keda.plain_rq_deployment("p", "ns", queue="q", redis_url="u", image="i", grace_seconds=90)
    assert grace["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90


def test_plain_rq_pods_are_the_pod_runners_and_selected_by_their_own_labels() -> None:
    body = keda.plain_rq_deployment("plain", "ns", queue="q", redis_url="u", image="i", labels={"bench": "x"})
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "jobqueue"  # hack/podrunner.py DEFAULT_SELECTOR
    selector = body["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert "bench" not in selector  # extra labels never change the (immutable) selector


def test_plain_rq_pods_meet_the_restricted_pod_security_standard() -> None:
    body = keda.plain_rq_deployment("p", "ns", queue="q", redis_url="u", image="i")
    spec = body["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_crd_names_come_from_kedas_file_names() -> None:
    assert keda.crd_name(Path("keda.sh_scaledobjects.yaml")) == "scaledobjects.keda.sh"
    assert keda.crd_name(Path("eventing.keda.sh_cloudeventsources.yaml")) == (
        "cloudeventsources.eventing.keda.sh"
    )
    with pytest.raises(ValueError, match=r"kustomization\.yaml"):
        keda.crd_name(Path("kustomization.yaml"))


def test_the_wrapper_module_builds_the_pinned_keda_version() -> None:
    # hack/build-keda.sh refuses to build when they differ; this catches it before CI does
    version = devenv.versions()["KEDA_VERSION"]
    gomod = (ROOT / "hack" / "tools" / "keda-bins" / "go.mod").read_text()
    assert re.search(rf"^\s*github\.com/kedacore/keda/v2 {re.escape(version)}\b", gomod, re.M), version
    # the one replace of KEDA's own go.mod (a dependency's replace is ignored elsewhere)
    assert "replace github.com/nexus-rpc/nexus-proto-annotations v0.1.0 =>" in gomod
