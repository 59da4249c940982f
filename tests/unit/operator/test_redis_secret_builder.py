"""The Secret of the default Redis URL: its apply body (golden), who owns it, its revision."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from jobqueue_operator.builders import redissecret
from jobqueue_operator.builders.redissecret import Live, Owner

GOLDEN = Path(__file__).parent / "golden"
URL = "redis://:s3cret-pw@redis.jobqueue:6379/0"


def body(
    url: str = URL,
    revision: int = 1,
    owners: tuple[Owner, ...] = (Owner("reports", "u-2"),),
) -> dict[str, Any]:
    return redissecret.build(namespace="glec", url=url, revision=revision, owners=owners)


def test_the_secret_matches_the_golden_manifest() -> None:
    golden = GOLDEN / "default-redis-secret.yaml"
    built = body(revision=2, owners=(Owner("reports", "u-2"), Owner("ei-update", "u-1")))
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(yaml.safe_dump(built, sort_keys=False))
    assert built == yaml.safe_load(golden.read_text()), "set UPDATE_GOLDEN=1 to accept an intended change"


def test_the_url_is_only_in_the_data() -> None:
    secret = body()
    assert base64.b64decode(secret["data"]["url"]).decode() == URL
    assert "stringData" not in secret  # the API server stores data only: stringData never matches
    assert "s3cret" not in yaml.safe_dump({k: v for k, v in secret.items() if k != "data"})


def test_every_jobqueue_on_the_default_redis_owns_it_without_being_its_controller() -> None:
    owners = body(owners=(Owner("reports", "u-2"), Owner("ei-update", "u-1"), Owner("reports", "u-2")))
    refs = owners["metadata"]["ownerReferences"]
    assert [(r["name"], r["uid"]) for r in refs] == [("ei-update", "u-1"), ("reports", "u-2")]  # sorted, once
    for ref in refs:
        assert (ref["apiVersion"], ref["kind"]) == ("jobqueue.glec.io/v1alpha1", "JobQueue")
        # shared: no controller, and an owner's foreground deletion does not wait for it
        assert "controller" not in ref
        assert "blockOwnerDeletion" not in ref


def test_the_live_secret_reads_back() -> None:
    live = Live.of({**body(revision=3), "metadata": {**body(revision=3)["metadata"], "uid": "s-1"}})
    assert live == Live(ours=True, url=URL, revision=3, owners=frozenset({"u-2"}), uid="s-1")


def test_a_secret_of_that_name_made_by_someone_else_is_not_ours() -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": redissecret.SECRET_NAME, "namespace": "glec", "uid": "x"},
        "data": {"url": base64.b64encode(b"redis://theirs:6379/0").decode()},
    }
    assert not Live.of(theirs).ours
    labelled_elsewhere = {
        **theirs,
        "metadata": {
            **theirs["metadata"],
            "labels": {
                "app.kubernetes.io/managed-by": "jobqueue-operator",
                "app.kubernetes.io/component": "worker",
            },
        },
    }
    assert not Live.of(labelled_elsewhere).ours
    assert Live.of({**theirs, "data": {"url": "not base64!"}}).url is None


def test_the_revision_moves_only_when_the_url_does() -> None:
    live = Live.of(body(revision=4))
    assert redissecret.revision(live, URL) == 4
    assert redissecret.revision(live, "redis://:rotated@redis.jobqueue:6379/0") == 5
    # created for the first time, or again after someone deleted it (the URL it held known)
    assert redissecret.revision(None, URL) == 1
    assert redissecret.revision(None, URL, known=4) == 4
    # a Secret of ours without the annotation (edited by hand) gets one
    unannotated = Live(ours=True, url=URL, revision=0, owners=frozenset(), uid="s")
    assert redissecret.revision(unannotated, URL) == 1
