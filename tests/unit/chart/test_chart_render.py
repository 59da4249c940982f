"""What `helm template` makes of the chart, value by value."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from jobqueue import metricnames
from jobqueue_operator import handlers, k8s
from jobqueue_operator.builders import redissecret
from jobqueue_operator.settings import Settings
from unit.chart import chartkit
from unit.chart.chartkit import NAMESPACE, Render, container_env, kinds, one

ROOT = chartkit.ROOT
CRD_NAMES = {"jobqueues.jobqueue.glec.io", "recurringjobs.jobqueue.glec.io"}


# --- CRDs ---------------------------------------------------------------------------------


def test_crds_are_templates_gated_by_crds_install(render: Render) -> None:
    # templates/ (not Helm's install-only crds/ folder): `helm upgrade` applies them too
    assert not (chartkit.CHART / "crds").exists()
    on = {o["metadata"]["name"] for o in kinds(render(), "CustomResourceDefinition")}
    off = kinds(render({"crds": {"install": False}}), "CustomResourceDefinition")
    assert on == CRD_NAMES
    assert off == []


def test_crds_are_kept_on_uninstall_unless_crds_keep_is_false(render: Render) -> None:
    for crd in kinds(render(), "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for crd in kinds(render({"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


def test_the_chart_crds_are_the_checked_in_crds(render: Render) -> None:
    for crd in kinds(render(), "CustomResourceDefinition"):
        source = yaml.safe_load((ROOT / "crds" / f"{crd['metadata']['name']}.yaml").read_text())
        assert crd["spec"] == source["spec"]


# --- the operator Deployment ----------------------------------------------------------------


def test_operator_deployment_shape(render: Render) -> None:
    deploy = one(render(), "Deployment")
    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 2
    assert spec["minReadySeconds"] == 5  # a new pod is up as a standby before an old one stops
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert container["command"] == ["jobqueue-operator"]
    assert container["image"] == "registry.example/jobqueue-operator:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080, "health": 8081}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    assert pod["serviceAccountName"] == "t-jobqueue-operator"
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "jobqueue"
    assert labels["app.kubernetes.io/component"] == "operator"
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_operator_pod_meets_the_restricted_pod_security_standard(render: Render) -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    chartkit.assert_restricted(pod)
    assert not any(v.get("hostPath") for v in pod.get("volumes", []))


def test_values_become_operator_environment(render: Render) -> None:
    env = container_env(
        one(
            render(
                {
                    "watchNamespaces": ["team-a", "team-b"],
                    "operator": {
                        "logLevel": "DEBUG",
                        "logFormat": "plain",
                        "metricsPort": 9090,
                        "healthPort": 9091,
                        "workerImagePullPolicy": "Always",
                        "resyncSeconds": 10,
                        "redisTimeoutSeconds": 1.5,
                        "extraEnv": [{"name": "EXTRA", "value": "1"}],
                    },
                    "priorityClasses": {"enabled": True, "namePrefix": "queue-prio-"},
                    "autoscaler": {"pollInterval": 0.5, "workerBudget": 40},
                }
            ),
            "Deployment",
        )
    )
    assert {k: v for k, v in env.items() if isinstance(v, str)} == {
        "JOBQUEUE_NAMESPACES": "team-a,team-b",
        "JOBQUEUE_REDIS_ISOLATION": "namespace",
        "JOBQUEUE_METRICS_PORT": "9090",
        "JOBQUEUE_HEALTH_PORT": "9091",
        "JOBQUEUE_LOG_LEVEL": "DEBUG",
        "JOBQUEUE_LOG_FORMAT": "plain",
        "JOBQUEUE_PRIORITY_CLASS_PREFIX": "queue-prio-",
        "JOBQUEUE_WORKER_IMAGE_PULL_POLICY": "Always",
        "JOBQUEUE_RESYNC_SECONDS": "10",
        "JOBQUEUE_REDIS_TIMEOUT_SECONDS": "1.5",
        "JOBQUEUE_POLL_INTERVAL": "0.5",
        "JOBQUEUE_WORKER_BUDGET": "40",
        "JOBQUEUE_LEADER_LEASE": "t-jobqueue-operator",
        "JOBQUEUE_LEADER_LEASE_SECONDS": "3",
        "JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS": "2",
        "JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS": "0.5",
        "EXTRA": "1",
    }
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_default_environment(render: Render) -> None:
    env = container_env(one(render(), "Deployment"))
    assert env["JOBQUEUE_NAMESPACES"] == ""  # every namespace
    assert env["JOBQUEUE_PRIORITY_CLASS_PREFIX"] == ""  # no PriorityClasses
    assert "JOBQUEUE_WORKER_IMAGE_PULL_POLICY" not in env
    assert env["JOBQUEUE_POLL_INTERVAL"] == "1"  # the operator's own default
    assert "JOBQUEUE_WORKER_BUDGET" not in env  # no budget


@pytest.mark.parametrize(
    ("autoscaler", "poll", "budget"),
    [
        ({"pollInterval": 0}, "0", None),  # autoscaler off (replicas left to e.g. KEDA)
        ({"pollInterval": 60, "workerBudget": 0}, "60", "0"),  # 0 is a budget, not "unset"
        # YAML numbers reach templates as floats: a large budget must not become "1e+06"
        ({"pollInterval": 0.1, "workerBudget": 1000000}, "0.1", "1000000"),
        ({"workerBudget": None}, "1", None),
    ],
)
def test_autoscaler_values_become_operator_environment(
    render: Render, autoscaler: dict[str, Any], poll: str, budget: str | None
) -> None:
    env = container_env(one(render({"autoscaler": autoscaler}), "Deployment"))
    assert env["JOBQUEUE_POLL_INTERVAL"] == poll
    assert env.get("JOBQUEUE_WORKER_BUDGET") == budget


def test_autoscaler_environment_is_what_the_operator_accepts(render: Render) -> None:
    """The rendered variables read back through the operator's own settings parser."""
    env = container_env(
        one(render({"autoscaler": {"pollInterval": 0.25, "workerBudget": 1000000}}), "Deployment")
    )
    config = Settings.from_env({**plain(env), "POD_NAMESPACE": NAMESPACE})
    assert (config.poll_interval, config.worker_budget) == (0.25, 1000000)
    env = container_env(one(render(), "Deployment"))
    config = Settings.from_env({**plain(env), "POD_NAMESPACE": NAMESPACE})
    assert (config.poll_interval, config.worker_budget) == (1.0, None)


def plain(env: dict[str, Any]) -> dict[str, str]:
    """The literal variables of a container (POD_NAMESPACE &c. come from the downward API)."""
    return {k: v for k, v in env.items() if isinstance(v, str)}


# --- two replicas: leader election, disruption budget, spreading ------------------------------


LEASE_ROLE = "t-jobqueue-operator-leader-election"


def test_leader_election_values_are_what_the_operator_accepts(render: Render) -> None:
    env = container_env(
        one(
            render(
                {
                    "leaderElection": {
                        "leaseDurationSeconds": 15,
                        "renewDeadlineSeconds": 10,
                        "retryPeriodSeconds": 2,
                    }
                }
            ),
            "Deployment",
        )
    )
    config = Settings.from_env({**plain(env), "POD_NAMESPACE": NAMESPACE})
    assert config.leader_lease == ("t-jobqueue-operator", NAMESPACE)
    timings = (config.lease_seconds, config.renew_deadline_seconds, config.retry_period_seconds)
    assert timings == (15, 10.0, 2.0)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}])
def test_the_lease_rbac_is_one_named_lease_in_the_release_namespace(
    render: Render, values: dict[str, Any]
) -> None:
    objects = render(values)
    role = one(objects, "Role", LEASE_ROLE)
    assert role["metadata"]["namespace"] == NAMESPACE
    lease = "t-jobqueue-operator"
    for verb in ("get", "create", "update", "patch"):
        assert rules_allow(role["rules"], "coordination.k8s.io", "leases", verb, name=lease), verb
    for rule in role["rules"]:  # nothing but that Lease: no list/watch/delete, no other to write
        assert rule["resources"] == ["leases"]
        assert rule["resourceNames"] == [lease]
    binding = one(objects, "RoleBinding", LEASE_ROLE)
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == LEASE_ROLE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "t-jobqueue-operator", "namespace": NAMESPACE}
    ]


def test_two_replicas_get_a_disruption_budget_and_are_spread_over_nodes(render: Render) -> None:
    objects = render()
    pdb = one(objects, "PodDisruptionBudget")
    deploy = one(objects, "Deployment")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"]
    (preferred,) = deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"] == deploy["spec"]["selector"]
    hard = one(render({"podAntiAffinity": "hard"}), "Deployment")["spec"]["template"]["spec"]["affinity"]
    assert hard["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [term]
    mine = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert one(render({"affinity": mine}), "Deployment")["spec"]["template"]["spec"]["affinity"] == mine
    unspread = one(render({"podAntiAffinity": "none"}), "Deployment")
    assert "affinity" not in unspread["spec"]["template"]["spec"]


def test_one_replica_has_no_budget_and_no_spreading(render: Render) -> None:
    objects = render({"replicaCount": 1})
    assert kinds(objects, "PodDisruptionBudget") == []
    deploy = one(objects, "Deployment")
    assert "affinity" not in deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"  # the Lease still hands over


def test_without_leader_election_one_replica_recreated(render: Render) -> None:
    objects = render({"replicaCount": 1, "leaderElection": {"enabled": False}})
    deploy = one(objects, "Deployment")
    assert (deploy["spec"]["replicas"], deploy["spec"]["strategy"]) == (1, {"type": "Recreate"})
    assert not [k for k in container_env(deploy) if k.startswith("JOBQUEUE_LEADER")]
    assert [r for r in kinds(objects, "Role") if r["metadata"]["name"] == LEASE_ROLE] == []


def test_two_replicas_without_leader_election_are_refused(
    render_error: Callable[[dict[str, Any]], str],
) -> None:
    error = render_error({"leaderElection": {"enabled": False}})
    assert "replicaCount > 1 needs leaderElection.enabled" in error


def test_shards_set_the_variable_and_grant_exactly_their_leases(render: Render) -> None:
    objects = render({"replicaCount": 3, "autoscaler": {"shards": 3}})
    assert container_env(one(objects, "Deployment"))["JOBQUEUE_SHARDS"] == "3"
    role = next(r for r in kinds(objects, "Role") if r["metadata"]["name"] == LEASE_ROLE)
    named = [rule for rule in role["rules"] if rule.get("resourceNames") and len(rule["resourceNames"]) > 1]
    assert [len(rule["resourceNames"]) for rule in named] == [6]  # 3 member + 3 shard Leases
    off = render({})
    assert "JOBQUEUE_SHARDS" not in container_env(one(off, "Deployment"))


def test_shards_without_leader_election_or_with_a_budget_are_refused(
    render_error: Callable[[dict[str, Any]], str],
) -> None:
    error = render_error(
        {"replicaCount": 1, "leaderElection": {"enabled": False}, "autoscaler": {"shards": 2}}
    )
    assert "autoscaler.shards needs leaderElection.enabled" in error
    error = render_error({"autoscaler": {"shards": 2, "workerBudget": 10}})
    assert "autoscaler.shards cannot be used with autoscaler.workerBudget" in error


def test_image_digest_wins_over_tag(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    deploy = one(render({"image": {"tag": "9.9.9", "digest": digest}}), "Deployment")
    assert (
        deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"registry.example/jobqueue-operator@{digest}"
    )


# --- knobs of the operator Deployment --------------------------------------------------------


def test_deployment_knobs_default_to_nothing_extra(render: Render) -> None:
    deploy = one(render(), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["revisionHistoryLimit"] == 10
    assert "annotations" not in deploy["metadata"]
    assert "topologySpreadConstraints" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert [m["name"] for m in pod["containers"][0]["volumeMounts"]] == ["tmp"]


def test_extra_volumes_and_mounts_join_the_operator_pod(render: Render) -> None:
    """What a private Redis CA needs (docs/operations.md): a Secret volume, mounted read-only."""
    volume = {"name": "redis-ca", "secret": {"secretName": "redis-ca"}}
    mount = {"name": "redis-ca", "mountPath": "/etc/jobqueue/redis-ca", "readOnly": True}
    pod = one(render({"extraVolumes": [volume], "extraVolumeMounts": [mount]}), "Deployment")["spec"][
        "template"
    ]["spec"]
    assert pod["volumes"][1:] == [volume]
    assert pod["containers"][0]["volumeMounts"][1:] == [mount]
    chartkit.assert_restricted(pod)  # a Secret volume keeps the pod "restricted"


def test_probes_revision_history_and_deployment_annotations(render: Render) -> None:
    probe_values = {"initialDelaySeconds": 2, "periodSeconds": 7, "failureThreshold": 5}
    deploy = one(
        render(
            {
                "readinessProbe": probe_values,
                "revisionHistoryLimit": 3,
                "deploymentAnnotations": {"team": "platform"},
            }
        ),
        "Deployment",
    )
    probe = deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe == {
        "httpGet": {"path": "/healthz", "port": "health"},
        "initialDelaySeconds": 2,
        "periodSeconds": 7,
        "timeoutSeconds": 5,
        "failureThreshold": 5,
    }
    assert deploy["spec"]["revisionHistoryLimit"] == 3
    assert deploy["metadata"]["annotations"] == {"team": "platform"}
    assert "team" not in deploy["spec"]["template"]["metadata"].get("annotations", {})  # not the pods'


def test_topology_spread_constraints_select_the_operator_pods_unless_told_otherwise(render: Render) -> None:
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    own = {**zone, "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"x": "y"}}}
    deploy = one(render({"topologySpreadConstraints": [zone, own]}), "Deployment")
    constraints = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraints == [{**zone, "labelSelector": deploy["spec"]["selector"]}, own]


def test_extra_objects_render_through_tpl_as_objects_or_strings(render: Render) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "{{ .Release.Name }}-redis-ca"},
        "stringData": {"ca.crt": "PEM"},
    }
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: {{ .Release.Namespace }}"
    objects = render({"extraObjects": [secret, text]})
    assert one(objects, "Secret", "t-redis-ca")["stringData"] == {"ca.crt": "PEM"}
    assert one(objects, "ConfigMap", "extra")["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"extraVolumeMounts": [{"name": "ca"}]}, "mountPath"),
        ({"extraVolumes": [{"secret": {"secretName": "ca"}}]}, "name"),
        ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]}, "whenUnsatisfiable"),
        ({"revisionHistoryLimit": -1}, "revisionHistoryLimit"),
        ({"extraObjects": [1]}, "extraObjects"),
    ],
)
def test_malformed_knobs_are_refused_naming_the_field(
    render_error: Callable[[dict[str, Any]], str], values: dict[str, Any], complaint: str
) -> None:
    assert complaint in render_error(values)


# --- Redis connection -----------------------------------------------------------------------


def test_redis_url_is_kept_in_a_secret_not_in_the_deployment(render: Render) -> None:
    url = "rediss://:pw@redis:6380/2"
    objects = render({"redis": {"url": url}})
    secret = one(objects, "Secret", "t-jobqueue-operator-redis")
    assert secret["stringData"] == {"url": url}
    deploy = one(objects, "Deployment")
    assert url not in json.dumps(deploy)
    assert container_env(deploy)["JOBQUEUE_REDIS_URL"] == {
        "secretKeyRef": {"name": "t-jobqueue-operator-redis", "key": "url"}
    }
    # no hash of the URL on the pod either (issue 20: an unsalted sha256 of it let anyone who
    # may read Deployments test password guesses offline)
    digest = hashlib.sha256(url.encode()).hexdigest()
    assert digest not in json.dumps(deploy)
    assert "annotations" not in deploy["spec"]["template"]["metadata"]


@pytest.mark.parametrize(
    ("redis", "isolation", "hosts"),
    [
        ({}, "namespace", None),  # the default: each namespace its own database and user
        ({"isolation": "none"}, "none", None),
        (
            {"allowedHosts": ["*.redis.svc.cluster.local", "10.0.0.0/8", "redis.example.com:6380"]},
            "namespace",
            "*.redis.svc.cluster.local,10.0.0.0/8,redis.example.com:6380",
        ),
    ],
)
def test_redis_isolation_and_allowed_hosts_become_operator_settings(
    render: Render, redis: dict[str, Any], isolation: str, hosts: str | None
) -> None:
    env = container_env(one(render({"redis": {"url": "redis://:pw@redis:6379/0", **redis}}), "Deployment"))
    assert env["JOBQUEUE_REDIS_ISOLATION"] == isolation
    assert env.get("JOBQUEUE_REDIS_ALLOWED_HOSTS") == hosts
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    config = Settings.from_env({**plain, "POD_NAMESPACE": "ns"})  # (the kubelet fills the downward API's)
    assert config.redis_isolation == isolation
    assert ",".join(config.redis_allowed_hosts) == (hosts or "")


def test_admission_policy_is_off_by_default_and_renders_only_the_lists_given(render: Render) -> None:
    assert kinds(render(), "ValidatingAdmissionPolicy") == []
    objects = render({"admissionPolicy": {"enabled": True, "allowedImagePrefixes": ["registry.example/"]}})
    policy = one(objects, "ValidatingAdmissionPolicy", "t-jobqueue-operator-jobqueues")
    expressions = [v["expression"] for v in policy["spec"]["validations"]]
    assert any("['registry.example/']" in e for e in expressions)
    assert not any("serviceAccountName" in e for e in expressions)  # a null list is no rule
    binding = one(objects, "ValidatingAdmissionPolicyBinding", "t-jobqueue-operator-jobqueues")
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_redis_from_an_existing_secret(render: Render) -> None:
    objects = render({"redis": {"existingSecret": "platform-redis", "existingSecretKey": "uri"}})
    assert kinds(objects, "Secret") == []
    assert container_env(one(objects, "Deployment"))["JOBQUEUE_REDIS_URL"] == {
        "secretKeyRef": {"name": "platform-redis", "key": "uri"}
    }


def test_without_redis_the_secret_reference_is_optional(render: Render) -> None:
    objects = render()
    assert kinds(objects, "Secret") == []
    assert container_env(one(objects, "Deployment"))["JOBQUEUE_REDIS_URL"] == {
        "secretKeyRef": {"name": "t-jobqueue-operator-redis", "key": "url", "optional": True}
    }


# --- RBAC ------------------------------------------------------------------------------------


def rules_allow(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (name is None or "resourceNames" not in r or name in r["resourceNames"])
        and (name is not None or "resourceNames" not in r)
        for r in rules
    )


#: (apiGroup, resource, verb) the operator needs in the namespaces it manages, on objects of
#: any name, as its code declares them (test_chart_rbac.py: exactly these)
NEEDED = sorted(
    {
        (need.group, need.resource, verb)
        for need in (*k8s.permissions(), *handlers.KOPF_NEEDS)
        if need.scope == "watched" and not need.names
        for verb in need.verbs
    }
)


def test_cluster_wide_rbac_by_default(render: Render) -> None:
    objects = render()
    assert [r["metadata"]["name"] for r in kinds(objects, "Role")] == [LEASE_ROLE]  # and nothing else
    assert [r["metadata"]["name"] for r in kinds(objects, "RoleBinding")] == [LEASE_ROLE]
    role = one(objects, "ClusterRole", "t-jobqueue-operator")
    for group, resource, verb in NEEDED:
        assert rules_allow(role["rules"], group, resource, verb), (group, resource, verb)
    assert rules_allow(role["rules"], "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    binding = one(objects, "ClusterRoleBinding", "t-jobqueue-operator")
    assert binding["roleRef"]["name"] == "t-jobqueue-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "t-jobqueue-operator", "namespace": NAMESPACE}
    ]


def test_namespaced_rbac_gives_a_role_per_watched_namespace(render: Render) -> None:
    objects = render({"watchNamespaces": ["team-a", "team-b"]})
    roles = [r for r in kinds(objects, "Role") if r["metadata"]["name"] != LEASE_ROLE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(
        b["metadata"]["namespace"]
        for b in kinds(objects, "RoleBinding")
        if b["metadata"]["name"] != LEASE_ROLE
    ) == ["team-a", "team-b"]
    for role in roles:
        for group, resource, verb in NEEDED:
            assert rules_allow(role["rules"], group, resource, verb), (group, resource, verb)
    # cluster-wide: read-only discovery, nothing else
    cluster_roles = [
        r for r in kinds(objects, "ClusterRole") if r["metadata"]["name"] == "t-jobqueue-operator-discovery"
    ]
    assert len(cluster_roles) == 1
    for rule in cluster_roles[0]["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert set(rule["resources"]) <= {"customresourcedefinitions", "namespaces"}
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == "t-jobqueue-operator-discovery"


def secret_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    operator_roles = [
        r
        for r in kinds(objects, "ClusterRole") + kinds(objects, "Role")
        if r["metadata"]["name"] in ("t-jobqueue-operator", "t-jobqueue-operator-discovery")
    ]
    return [r for role in operator_roles for r in role["rules"] if "secrets" in r["resources"]]


def test_secrets_are_reachable_only_by_name(render: Render) -> None:
    """Secrets named in spec.redis: `get` only. The namespace's Secret of the default Redis
    URL, which the operator writes: every verb it needs, and only for that one name (a
    server-side apply creating it is authorised as `create` of the name). No list or watch,
    no Secret by any other name."""
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        objects = render({**values, "rbac": {"redisSecretNames": ["jobqueue-redis", "other-redis"]}})
        rules = secret_rules(objects)
        by_names = {tuple(r["resourceNames"]): r["verbs"] for r in rules}
        assert by_names == {
            ("jobqueue-redis", "other-redis"): ["get"],
            (redissecret.SECRET_NAME,): ["get", "create", "patch", "delete"],
        }
        assert len(rules) == 2
    rules = secret_rules(render({"rbac": {"redisSecretNames": []}}))
    assert [(r["resourceNames"], r["verbs"]) for r in rules] == [
        ([redissecret.SECRET_NAME], ["get", "create", "patch", "delete"])
    ]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster", "namespaced"])
def test_no_wildcards_and_no_unrelated_workloads(render: Render, values: dict[str, Any]) -> None:
    objects = render(values)
    for role in kinds(objects, "ClusterRole") + kinds(objects, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
            assert "*" not in rule["apiGroups"]
            assert not {
                "statefulsets",
                "daemonsets",
                "replicasets",
                "services",
                "configmaps",
                "roles",
                "rolebindings",
                "clusterroles",
            } & set(rule["resources"])


def test_aggregated_user_roles(render: Render) -> None:
    objects = render()
    edit = one(objects, "ClusterRole", "t-jobqueue-operator-edit")
    view = one(objects, "ClusterRole", "t-jobqueue-operator-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert kinds(render({"rbac": {"aggregateToDefaultRoles": False}}), "ClusterRole") == [
        one(objects, "ClusterRole", "t-jobqueue-operator")
    ]


def test_rbac_and_service_account_can_be_left_to_the_user(render: Render) -> None:
    objects = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"):
        assert kinds(objects, kind) == [], kind
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# --- PriorityClasses ------------------------------------------------------------------------


def test_priority_classes_are_optional(render: Render) -> None:
    assert kinds(render(), "PriorityClass") == []
    classes = kinds(render({"priorityClasses": {"enabled": True}}), "PriorityClass")
    assert {c["metadata"]["name"]: c["value"] for c in classes} == {
        "jobqueue-priority-1": 400,
        "jobqueue-priority-2": 300,
        "jobqueue-priority-3": 200,
        "jobqueue-priority-4": 100,
        "jobqueue-priority-5": 0,
    }
    assert all(c["preemptionPolicy"] == "Never" and c["globalDefault"] is False for c in classes)


def test_existing_priority_classes_are_used_not_created(render: Render) -> None:
    objects = render({"priorityClasses": {"enabled": True, "create": False, "namePrefix": "batch-"}})
    assert kinds(objects, "PriorityClass") == []
    assert container_env(one(objects, "Deployment"))["JOBQUEUE_PRIORITY_CLASS_PREFIX"] == "batch-"


# --- monitoring -----------------------------------------------------------------------------

ALL_MONITORING = {
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True},
}


def test_prometheus_operator_objects_only_when_enabled_and_served(render: Render) -> None:
    assert not [
        o
        for o in render(api_versions=chartkit.MONITORING_APIS)
        if o["apiVersion"].startswith("monitoring.coreos.com")
    ]
    # enabled, but the cluster has no Prometheus Operator: nothing that would fail the install
    assert not [o for o in render(ALL_MONITORING) if o["apiVersion"].startswith("monitoring.coreos.com")]
    objects = render(ALL_MONITORING, api_versions=chartkit.MONITORING_APIS)
    assert {o["kind"] for o in objects if o["apiVersion"] == "monitoring.coreos.com/v1"} == {
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    }


def test_service_monitor_scrapes_the_operator_keeping_its_namespace_label(render: Render) -> None:
    objects = render(ALL_MONITORING, api_versions=chartkit.MONITORING_APIS)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_pod_monitor_selects_worker_pods_in_the_watched_namespaces(render: Render) -> None:
    cluster = one(render(ALL_MONITORING, api_versions=chartkit.MONITORING_APIS), "PodMonitor")
    assert cluster["spec"]["namespaceSelector"] == {"any": True}
    assert cluster["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "jobqueue-operator",
    }
    assert cluster["spec"]["podMetricsEndpoints"][0]["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_label_jobqueue_glec_io_jobqueue"], "targetLabel": "jobqueue"}
    ]
    namespaced = one(
        render({**ALL_MONITORING, "watchNamespaces": ["team-a"]}, api_versions=chartkit.MONITORING_APIS),
        "PodMonitor",
    )
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_prometheus_rule_carries_the_generated_rule_file(render: Render) -> None:
    rule = one(render(ALL_MONITORING, api_versions=chartkit.MONITORING_APIS), "PrometheusRule")
    generated = yaml.safe_load((ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml").read_text())
    assert rule["spec"] == generated
    assert len(rule["spec"]["groups"][0]["rules"]) >= 6


def test_gitops_renders_the_monitors_without_any_cluster(render: Render) -> None:
    """`helm template`, Argo CD and Flux render with no cluster to report the Prometheus
    Operator API: with the check off, `enabled: true` means the objects are there."""
    objects = render({**ALL_MONITORING, "monitoringCapabilityCheck": False})  # no --api-versions
    assert sorted(o["kind"] for o in objects if o["apiVersion"] == "monitoring.coreos.com/v1") == [
        "PodMonitor",
        "PrometheusRule",
        "ServiceMonitor",
    ]
    # and nothing that was not enabled
    assert not [
        o
        for o in render({"monitoringCapabilityCheck": False})
        if o["apiVersion"].startswith("monitoring.coreos.com")
    ]


def test_monitor_fields_namespace_timeouts_relabelings_job_label(render: Render) -> None:
    drop = [{"sourceLabels": ["__name__"], "regex": "python_.*", "action": "drop"}]
    node = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]
    fields = {
        "namespace": "monitoring",
        "scrapeTimeout": "10s",
        "jobLabel": "app.kubernetes.io/name",
        "relabelings": node,
        "metricRelabelings": drop,
    }
    objects = render(
        {
            "monitoringCapabilityCheck": False,
            "metrics": {
                "serviceMonitor": {"enabled": True, **fields},
                "podMonitor": {"enabled": True, **fields},
            },
        }
    )
    service_monitor, pod_monitor = one(objects, "ServiceMonitor"), one(objects, "PodMonitor")
    for monitor, endpoints in ((service_monitor, "endpoints"), (pod_monitor, "podMetricsEndpoints")):
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        (endpoint,) = monitor["spec"][endpoints]
        assert endpoint["scrapeTimeout"] == "10s"
        assert endpoint["metricRelabelings"] == drop
    # still scraping the release namespace's operator, from the monitors' namespace
    assert service_monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert service_monitor["spec"]["endpoints"][0]["relabelings"] == node
    # the user's relabelings come after the chart's own `jobqueue` label
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][1:] == node
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"] == "jobqueue"


def test_monitor_defaults_leave_the_optional_fields_out(render: Render) -> None:
    objects = render({**ALL_MONITORING, "monitoringCapabilityCheck": False})
    service_monitor, pod_monitor = one(objects, "ServiceMonitor"), one(objects, "PodMonitor")
    assert "jobLabel" not in service_monitor["spec"]
    assert "jobLabel" not in pod_monitor["spec"]
    assert "scrapeTimeout" not in service_monitor["spec"]["endpoints"][0]
    assert "metricRelabelings" not in pod_monitor["spec"]["podMetricsEndpoints"][0]
    assert one(objects, "PrometheusRule")["metadata"]["namespace"] == NAMESPACE


def shipped_alerts() -> dict[str, dict[str, Any]]:
    generated = yaml.safe_load((ROOT / "manifests" / "monitoring" / "jobqueue-alerts.yaml").read_text())
    return {r["alert"]: r for g in generated["groups"] for r in g["rules"] if "alert" in r}


def test_alerts_can_be_turned_off_changed_and_added_to(render: Render) -> None:
    shipped = shipped_alerts()
    off, changed = sorted(shipped)[:2]
    extra = {
        "alert": "MyQueueEmpty",
        "expr": "sum(jobqueue_queue_jobs) == 0",
        "for": "1h",
        "labels": {"severity": "info"},
    }
    rule = one(
        render(
            {
                "monitoringCapabilityCheck": False,
                "prometheusRule": {
                    "enabled": True,
                    "namespace": "monitoring",
                    "alerts": {
                        off: {"enabled": False},
                        changed: {"for": "45m", "labels": {"severity": "critical", "team": "platform"}},
                    },
                    "extraRules": [extra],
                },
            }
        ),
        "PrometheusRule",
    )
    assert rule["metadata"]["namespace"] == "monitoring"
    rendered = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(rendered) == set(shipped) - {off} | {"MyQueueEmpty"}
    assert rendered[changed]["for"] == "45m"
    assert rendered[changed]["labels"] == {
        **shipped[changed]["labels"],
        "severity": "critical",
        "team": "platform",
    }
    assert rendered[changed]["annotations"] == shipped[changed]["annotations"]  # untouched
    assert rendered["MyQueueEmpty"] == extra
    untouched = set(shipped) - {off, changed}
    assert all(rendered[name] == shipped[name] for name in untouched)


def test_an_unknown_alert_name_is_refused_listing_the_real_ones(
    render_error: Callable[[dict[str, Any]], str],
) -> None:
    error = render_error(
        {
            "monitoringCapabilityCheck": False,
            "prometheusRule": {"enabled": True, "alerts": {"JobQueueBacklogGrowin": {"enabled": False}}},
        }
    )
    assert "prometheusRule.alerts.JobQueueBacklogGrowin: there is no such alert" in error
    assert "JobQueueBacklogGrowing" in error


def test_dashboard_configmap_for_the_grafana_sidecar(render: Render) -> None:
    assert kinds(render(), "ConfigMap") == []
    cm = one(render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}), "ConfigMap")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((ROOT / "manifests" / "monitoring" / "jobqueue-dashboard.json").read_text())
    assert json.loads(cm["data"]["jobqueue-dashboard.json"]) == shipped


# --- network policy and helm test -----------------------------------------------------------


def test_network_policy_is_optional_and_tight(render: Render) -> None:
    assert kinds(render(), "NetworkPolicy") == []
    policy = one(render({"networkPolicy": {"enabled": True, "redisPorts": [6379, 6380]}}), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for rule in spec["ingress"] for p in rule["ports"]} == {"metrics", "health"}
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443, 6443, 6379, 6380}
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_helm_test_pod_is_a_restricted_hook_outside_the_product_labels(render: Render) -> None:
    pod = one(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "app.kubernetes.io/part-of" not in pod["metadata"]["labels"]  # the dev pod runner ignores it
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "t-jobqueue-operator-metrics" in pod["spec"]["containers"][0]["args"][0]
    # the one metric name spelled in the chart is a real one
    assert f"'^{metricnames.OPERATOR_INFO}'" in pod["spec"]["containers"][0]["args"][0]
    assert kinds(render({"tests": {"enabled": False}}), "Pod") == []


def test_every_resource_has_the_product_labels(render: Render) -> None:
    everything = {
        **ALL_MONITORING,
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "priorityClasses": {"enabled": True},
        "redis": {"url": "redis://r:6379/0"},
        "commonLabels": {"team": "platform"},
    }
    for obj in render(everything, api_versions=chartkit.MONITORING_APIS):
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] in ("CustomResourceDefinition", "Pod"):
            continue  # CRDs: labelled by crdgen; Pod: the helm test
        assert labels.get("app.kubernetes.io/part-of") == "jobqueue", obj["kind"]
        assert labels.get("app.kubernetes.io/instance") == "t", obj["kind"]
        assert labels.get("team") == "platform", obj["kind"]
        assert len(obj["metadata"]["name"]) <= 63


# --- NOTES.txt ---------------------------------------------------------------------------------


def notes(helm: str, values: dict[str, Any] | None = None) -> str:
    out = chartkit.run_helm(
        helm,
        "install",
        "t",
        str(chartkit.CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        values=values or {},
    ).stdout
    return out.split("NOTES:", 1)[1]


def test_notes_tell_what_to_do_next(helm: str) -> None:
    text = notes(helm)
    assert f"kubectl -n {NAMESPACE} rollout status deployment/t-jobqueue-operator" in text
    assert "WARNING: no default Redis is configured" in text
    assert "create secret generic t-jobqueue-operator-redis" in text
    assert "kubectl get jobqueues -A" in text
    assert "every namespace" in text
    configured = notes(helm, {"redis": {"url": "redis://r:6379/0"}, "watchNamespaces": ["team-a"]})
    assert "WARNING" not in configured
    assert "these namespaces only: team-a" in configured


def test_notes_warn_when_monitoring_objects_were_skipped(helm: str) -> None:
    text = notes(
        helm, {"metrics": {"serviceMonitor": {"enabled": True}}, "prometheusRule": {"enabled": True}}
    )
    assert "WARNING: ServiceMonitor is enabled but this cluster does not serve" in text
    assert "WARNING: PrometheusRule is enabled but this cluster does not serve" in text
    assert "PodMonitor" not in text
