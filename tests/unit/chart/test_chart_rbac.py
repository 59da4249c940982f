"""The operator's RBAC in the chart is exactly what its code asks of the API, both ways.

The code declares the rule each request needs next to it (``@needs`` in
:mod:`jobqueue_operator.k8s`) and what kopf does for the handlers
(:data:`jobqueue_operator.handlers.KOPF_NEEDS`). The chart's rules are written by hand (with
a comment saying why, docs/operator.md's table); here they are rendered and compared rule
atom by rule atom: a new call without its rule fails, and so does a rule no call uses. That
it really is enough is shown by the chart's integration tests, which run the operator under
this service account (tests/integration/chart).
"""

from __future__ import annotations

import inspect
from typing import Any

import kopf

from jobqueue_operator import handlers, k8s, sharding
from unit.chart.chartkit import Manifest, Render, kinds

RELEASE = "t-jobqueue-operator"
VALUES: dict[str, Any] = {
    "rbac": {"redisSecretNames": ["redis-url"], "notificationSecretNames": ["hook-url"]},
    "autoscaler": {"shards": 2},
}
#: resourceNames the chart takes from values (or the release name: the leader Lease) → the
#: placeholders the code declares for them
PLACEHOLDERS = {
    ("redis-url",): (k8s.REDIS_SECRET_NAMES,),
    ("hook-url",): (k8s.NOTIFICATION_SECRET_NAMES,),
    (RELEASE,): (k8s.LEASE_NAME,),
    sharding.lease_names(RELEASE, 2): (k8s.SHARD_LEASE_NAMES,),
}
#: the operator's roles, each with the scope it grants in (the users' aggregated roles and
#: the admin API's are not the operator's)
NAMESPACED_ROLES = {
    ("Role", RELEASE): "watched",
    ("ClusterRole", f"{RELEASE}-discovery"): "cluster",
    ("Role", f"{RELEASE}-leader-election"): "release",
}

#: (scope, apiGroup, resource, verb, resourceNames)
Atom = tuple[str, str, str, str, tuple[str, ...]]


def declared() -> set[Atom]:
    return {
        (need.scope, need.group, need.resource, verb, need.names)
        for need in (*k8s.permissions(), *handlers.KOPF_NEEDS)
        for verb in need.verbs
    }


def granted(objects: list[Manifest], scopes: dict[tuple[str, str], str]) -> set[Atom]:
    atoms: set[Atom] = set()
    for role in kinds(objects, "Role") + kinds(objects, "ClusterRole"):
        scope = scopes.get((role["kind"], role["metadata"]["name"]))
        if scope is None:
            continue
        for rule in role["rules"]:
            names = tuple(rule.get("resourceNames", ()))
            names = PLACEHOLDERS.get(names, names)
            atoms |= {
                (scope, group, resource, verb, names)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return atoms


def test_the_chart_grants_exactly_what_the_code_declares(render: Render) -> None:
    chart = granted(render({**VALUES, "watchNamespaces": ["team-a"]}), NAMESPACED_ROLES)
    code = declared()
    assert not code - chart, f"declared in the code, not granted by the chart: {sorted(code - chart)}"
    assert not chart - code, f"granted by the chart, used by no call: {sorted(chart - code)}"


def test_cluster_wide_the_watched_and_cluster_rules_are_one_cluster_role(render: Render) -> None:
    scopes = {("ClusterRole", RELEASE): "any", ("Role", f"{RELEASE}-leader-election"): "release"}
    chart = granted(render(VALUES), scopes)
    code = {(scope if scope == "release" else "any", *rest) for scope, *rest in declared()}
    assert chart == code, (sorted(code - chart), sorted(chart - code))


def test_kopf_needs_name_every_kind_kopf_watches_for_the_handlers() -> None:
    """KOPF_NEEDS is read from kopf's registry of the handlers (private attributes: kopf has no
    public listing), so a handler on a new kind cannot be added without its permissions."""
    registry = kopf.get_default_registry()
    resource_registries = (
        registry._indexing,
        registry._watching,
        registry._changing,
        registry._spawning,
        registry._webhooks,
    )
    watched = {
        (s.group or "", s.plural or s.any_name) for r in resource_registries for s in r.get_all_selectors()
    }
    changed = {(s.group or "", s.plural or s.any_name) for s in registry._changing.get_all_selectors()}
    scoped = [need for need in handlers.KOPF_NEEDS if need.scope == "watched"]
    assert {(need.group, need.resource) for need in scoped} == watched
    for need in scoped:
        assert {"list", "watch"} <= set(need.verbs), need
        assert ("patch" in need.verbs) == ((need.group, need.resource) in changed), need


def test_every_request_method_of_kube_declares_its_rules() -> None:
    """A new method without ``@needs`` would add a call the equality above cannot see."""
    requests = {
        f"Kube.{name}"
        for name, fn in vars(k8s.Kube).items()
        if inspect.iscoroutinefunction(fn) and not name.startswith("_") and name != "close"
    }
    assert requests
    assert requests == k8s.declared_methods()
