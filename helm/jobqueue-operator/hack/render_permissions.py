"""Render the operator's permissions table in docs/operator.md from the chart's RBAC.

    python helm/jobqueue-operator/hack/render_permissions.py           # rewrite the table
    python helm/jobqueue-operator/hack/render_permissions.py --check   # exit 1 if it is stale

The chart is rendered with ``helm template`` in namespaced mode (``watchNamespaces``), where
each rule lands in the object that says its scope: the Role of a watched namespace, the
discovery ClusterRole, the leader-election Role of the release namespace (in cluster-wide mode
the first two are one ClusterRole, the same rules). Each rule's "why" is the ``#`` comment
above it in the templates (``_helpers.tpl``, ``leader-election-rbac.yaml``): a rule without one
fails the rendering, so a new permission cannot go undocumented. The table goes between the
``<!-- permissions:begin -->`` and ``<!-- permissions:end -->`` markers.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from typing import Any

import yaml
from render_install import CHART, ROOT, find_helm, write_or_check

DOCS = ROOT / "docs" / "operator.md"
BEGIN, END = "<!-- permissions:begin -->", "<!-- permissions:end -->"
RELEASE = "jobqueue-operator"
#: Placeholders the table shows for the names that come from values.
WATCHED = "team-a"
NOTIFICATION_SECRETS = "notification-webhook"
#: (object kind, name suffix after the full name) -> the scope the table names
SCOPES = {
    ("Role", ""): "each watched namespace (all: a ClusterRole)",
    ("ClusterRole", "-discovery"): "cluster",
    ("Role", "-leader-election"): "release namespace",
}


def rules_with_reasons(document: str) -> list[tuple[dict[str, Any], str]]:
    """The rules of one rendered Role/ClusterRole, each with the comment lines above it."""
    reasons: list[str] = []
    comment: list[str] = []
    for line in document.split("\nrules:\n", 1)[1].splitlines():
        text = line.strip()
        if text.startswith("#"):
            comment.append(text.lstrip("# "))
        elif text.startswith("- apiGroups:"):
            reasons.append(" ".join(comment))
            comment = []
    parsed: list[dict[str, Any]] = yaml.safe_load(document)["rules"]
    if len(parsed) != len(reasons):
        raise SystemExit("a rule of the chart's RBAC is not in the `- apiGroups:` form this reads")
    return list(zip(parsed, reasons, strict=True))


def table(helm: str) -> str:
    rendered = subprocess.run(
        [
            helm,
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            "jobqueue-system",
            "--set",
            f"watchNamespaces={{{WATCHED}}}",
            "--set",
            f"rbac.notificationSecretNames={{{NOTIFICATION_SECRETS}}}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = []
    for document in rendered.split("\n---\n"):
        body = yaml.safe_load(document) or {}
        if body.get("kind") not in ("Role", "ClusterRole"):
            continue
        meta = body["metadata"]
        if meta.get("namespace") not in (None, WATCHED, "jobqueue-system"):
            continue
        suffix = meta["name"].removeprefix(RELEASE)
        scope = SCOPES.get((body["kind"], suffix))
        if scope is None:
            continue  # the users' aggregated roles and the admin API's: not the operator's
        for rule, why in rules_with_reasons(document):
            if not why:
                raise SystemExit(
                    f"{body['kind']} {meta['name']}: a rule without a `#` comment saying why "
                    f"({rule}); add one above it in the template"
                )
            names = ", ".join(f"`{n}`" for n in rule.get("resourceNames", [])) or "any"
            rows.append(
                "| {} | {} | {} | {} | {} | {} |".format(
                    ", ".join(f"`{g}`" if g else '`""` (core)' for g in rule["apiGroups"]),
                    ", ".join(f"`{r}`" for r in rule["resources"]),
                    names,
                    ", ".join(rule["verbs"]),
                    scope,
                    re.sub(r"\s+", " ", why).replace("|", "\\|"),
                )
            )
    head = ["| API group | resources | names | verbs | where | why |", "|---|---|---|---|---|---|"]
    note = (
        f"\nGenerated from the chart's RBAC by `hack/render_permissions.py` (`make generate`), rendered "
        f"with `watchNamespaces: [{WATCHED}]` and `rbac.notificationSecretNames: "
        f"[{NOTIFICATION_SECRETS}]`; `jobqueue-redis` is `rbac.redisSecretNames`' default. "
        f"`rbac.extraRules` adds yours.\n"
    )
    return "\n".join([*head, *rows]) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the table is stale")
    parser.add_argument("--helm", help="the helm binary")
    args = parser.parse_args(argv)
    text = DOCS.read_text()
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    fresh = f"{before}{BEGIN}\n{table(find_helm(args.helm))}{END}{after}"
    return write_or_check(DOCS, fresh, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
