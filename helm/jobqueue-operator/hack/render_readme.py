"""Render the chart README's values table from values.yaml (helm-docs conventions).

    python helm/jobqueue-operator/hack/render_readme.py           # rewrite the table in README.md
    python helm/jobqueue-operator/hack/render_readme.py --check   # exit 1 if README.md is stale

A key is documented by the ``# --`` comment block right above it (continued by further ``#``
lines); ``# -- (int) text`` names the type where the default cannot (``null``), and
``# @default -- text`` in that block replaces the shown default (for defaults that are
computed, not literal). Nested keys get dotted names. The table goes between the
``<!-- values:begin -->`` and ``<!-- values:end -->`` markers of README.md, so the rest of the
README stays hand-written. helm-docs itself is a Go tool that is not installable here; this is
the part of it the chart needs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
_COMMENT = re.compile(r"^(?P<indent>\s*)#(?P<text>.*)$")


@dataclass(frozen=True)
class Value:
    key: str
    type: str
    default: str
    description: str


#: helm-docs' type names of the YAML scalars (bool before int: a bool is an int in Python)
_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (list, "list"))


def _type(value: Any) -> str:
    if value is None:
        return "string"  # null: unset (the templates treat it as empty); `# -- (type)` says better
    return next((name for kind, name in _TYPES if isinstance(value, kind)), "object")


def _lookup(tree: Any, path: list[str]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def values(text: str) -> list[Value]:
    """Every documented key of ``text`` (a values.yaml), in file order."""
    tree = yaml.safe_load(text)
    out: list[Value] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    block: list[str] = []  # the comment lines right above the current line
    for line in text.splitlines():
        comment = _COMMENT.match(line)
        if comment:
            block.append(comment["text"])
            continue
        key = _KEY.match(line)
        if not key or line.lstrip().startswith("-"):
            block = []
            continue
        indent = len(key["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key["key"]]
        stack.append((indent, key["key"]))
        doc = _description(block)
        block = []
        if doc is None:
            continue
        description, default_override = doc
        value = _lookup(tree, path)
        default = default_override if default_override is not None else f"`{json.dumps(value)}`"
        hinted = re.match(r"^\((?P<type>[a-z]+)\)\s*(?P<rest>.*)$", description)
        kind = hinted["type"] if hinted else _type(value)
        out.append(Value(".".join(path), kind, default, hinted["rest"] if hinted else description))
    return out


def _description(block: list[str]) -> tuple[str, str | None] | None:
    """(description, @default override) of a ``# --`` block, None if it is not one."""
    starts = [i for i, text in enumerate(block) if text.lstrip().startswith("--")]
    if not starts:
        return None
    lines = [block[starts[-1]].lstrip()[2:].strip()] + [t.strip() for t in block[starts[-1] + 1 :]]
    default = None
    kept = []
    for text in lines:
        if text.startswith("@default --"):
            default = text.removeprefix("@default --").strip()
        else:
            kept.append(text)
    return " ".join(t for t in kept if t), default


def table(rows: list[Value]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| Parameter | Type | Default | Description |", "|---|---|---|---|"]
    out += [f"| `{r.key}` | {r.type} | {cell(r.default)} | {cell(r.description)} |" for r in rows]
    return "\n".join(out)


def render(readme: str, values_text: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md needs the markers {BEGIN} and {END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(values(values_text))}\n{END}{tail}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = p.parse_args()
    path = CHART / "README.md"
    current = path.read_text()
    wanted = render(current, (CHART / "values.yaml").read_text())
    if args.check:
        if wanted != current:
            print(f"{path} is stale: run `make generate`", file=sys.stderr)
            raise SystemExit(1)
        return
    path.write_text(wanted)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
