"""Pure rules of issue 20: which objects are ours, namespace credentials, conflict messages."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from jobqueue_operator import reconcile
from jobqueue_operator.builders import names, redisacl
from jobqueue_operator.scaling import views

UID = "1f0c4c9e-0000-4000-8000-000000000001"


def child(
    *, labels: dict[str, str] | None = None, refs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "emails-worker",
            "namespace": "ns",
            "labels": names.worker_labels("emails") if labels is None else labels,
            "ownerReferences": refs
            if refs is not None
            else [names.owner_reference(kind="JobQueue", name="emails", uid=UID)],
        }
    }


def test_ours_needs_our_labels_and_the_owners_controller_reference() -> None:
    def ours(body: dict[str, Any]) -> bool:
        return names.owned_by_us(body, kind="JobQueue", component="worker", owner_uid=UID)

    assert ours(child())
    assert not ours(child(labels={"app": "emails"}))  # someone else's Deployment of that name
    assert not ours(child(refs=[]))  # our labels, copied
    assert not ours(child(refs=[names.owner_reference(kind="JobQueue", name="emails", uid="other")]))
    assert not ours(
        child(refs=[names.owner_reference(kind="JobQueue", name="emails", uid=UID, controller=False)])
    )
    assert not ours(
        child(
            refs=[
                {
                    **names.owner_reference(kind="JobQueue", name="emails", uid=UID),
                    "apiVersion": "example.com/v1",
                }
            ]
        )
    )  # another group's JobQueue
    # the shared Secret: any JobQueue of ours among its owners
    assert names.owned_by_us(
        child(
            labels={names.MANAGED_BY_LABEL: names.MANAGED_BY, names.COMPONENT_LABEL: "default-redis"},
            refs=[names.owner_reference(kind="JobQueue", name="x", uid="u", controller=False)],
        ),
        kind="JobQueue",
        component="default-redis",
    )


def test_the_autoscaler_views_keep_the_controller() -> None:
    body = {**child(), "spec": {"replicas": 2}}
    assert views.deployment_entry(body)[("ns", "emails")].controller_uid == UID  # type: ignore[index]
    assert views.deployment_entry(child(refs=[]))[("ns", "emails")].controller_uid is None  # type: ignore[index]
    pod = child(
        refs=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "emails-worker-5d8f",
                "uid": "rs",
                "controller": True,
            }
        ]
    )
    assert views.pod_entry(pod)[("ns", "emails")].replica_set == "emails-worker-5d8f"  # type: ignore[index]
    assert views.pod_entry(child(refs=[]))[("ns", "emails")].replica_set is None  # type: ignore[index]


def test_conflict_messages_name_only_a_jobqueue_of_the_same_namespace() -> None:
    same = reconcile.conflict_message("glec", "ei:update", ("glec", "ei-update"))
    assert "JobQueue ei-update of this namespace" in same
    other = reconcile.conflict_message("mallory", "ei:update", ("glec", "ei-update"))
    assert "glec" not in other
    assert "ei-update" not in other
    assert "another namespace" in other


ADMIN = "rediss://:admin-secret@redis.jobs.svc:6380/0?password=admin-secret&db=0&ssl_cert_reqs=required"


def test_a_namespace_url_has_its_own_user_password_and_database_and_nothing_of_the_operators() -> None:
    url = redisacl.tenant_url(ADMIN, "glec", "p@ss/word", 7)
    assert "admin-secret" not in url
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("rediss", "redis.jobs.svc", 6380, "/7")
    assert parts.username == "jobqueue-ns-glec"
    assert redisacl.password_of(url, "glec") == "p@ss/word"
    assert redisacl.password_of(url, "other") is None  # another namespace's URL is no password of ours
    assert redisacl.password_of(ADMIN, "glec") is None
    assert redisacl.database_of(url) == 7


SENTINELS = (
    "redis+sentinel://:admin-secret@s1:26379,s2:26380/mymaster/0?sentinel_password=s3nt&socket_timeout=3"
)


def test_a_namespace_url_on_sentinels_keeps_the_sentinels_and_what_reaching_them_needs() -> None:
    url = redisacl.tenant_url(SENTINELS, "glec", "pw", 7)
    assert url == "redis+sentinel://jobqueue-ns-glec:pw@s1:26379,s2:26380/mymaster/7?sentinel_password=s3nt"
    assert redisacl.database_of(url) == 7
    assert redisacl.password_of(url, "glec") == "pw"
    assert redisacl.operator_url(SENTINELS, 7) == (
        "redis+sentinel://:admin-secret@s1:26379,s2:26380/mymaster/7?sentinel_password=s3nt&socket_timeout=3"
    )
    assert redisacl.database_of(SENTINELS) == 0


def test_the_operator_keeps_its_own_credentials_on_the_namespace_database() -> None:
    url = redisacl.operator_url(ADMIN, 7)
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/7"
    assert parts.password == "admin-secret"
    assert "db=" not in parts.query  # a db in the query would win over the path
    assert "ssl_cert_reqs=required" in parts.query


def test_acl_rules_confine_a_namespace_to_its_database() -> None:
    rules = redisacl.rules(7, "pw")
    assert rules[0] == "reset"  # nothing left over from before
    assert f"#{redisacl.password_hash('pw')}" in rules
    assert "pw" not in rules  # the password itself never travels
    assert rules.index("-select") < rules.index("+select|7")
    assert "%R~jobqueue:settings*" in rules
    assert "~jobqueue:*" not in rules  # the settings must stay read-only
    assert "~jobqueue:[^s]*" in rules  # every other key of ours, later ones included
    for denied in ("-move", "-copy", "-@admin", "-@dangerous", "-client|tracking", "-pubsub", "-function"):
        assert denied in rules
    assert "resetchannels" in rules


@pytest.mark.parametrize("namespace", ["a", "glec", "x" * 63])
def test_user_names_are_per_namespace(namespace: str) -> None:
    assert redisacl.user_name(namespace) == f"jobqueue-ns-{namespace}"
