"""Which deleted child its owner makes again (the worker Deployment, the CronJob)."""

from __future__ import annotations

from typing import Any

import pytest

from jobqueue_operator.builders import names


def owner(uid: str, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "q", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T08:00:00Z"
    return {"metadata": meta}


CHILD = {
    "metadata": {"name": "q-worker", "ownerReferences": [{"kind": "JobQueue", "name": "q", "uid": "u1"}]}
}


@pytest.mark.parametrize(
    ("live", "child", "expected"),
    [
        (owner("u1"), CHILD, True),  # deleted by someone: make it again
        (owner("u1", deleting=True), CHILD, False),  # garbage collection after the owner's deletion
        (owner("u2"), CHILD, False),  # a child of an earlier owner of the same name
        (owner("u1"), {"metadata": {"name": "x"}}, False),  # owned by nobody
    ],
)
def test_an_owner_recreates_only_its_own_child_deleted_by_someone_else(
    live: dict[str, Any], child: dict[str, Any], expected: bool
) -> None:
    assert names.recreates(live, child) is expected
