"""The chart README's values table is generated from values.yaml and cannot drift."""

from __future__ import annotations

import subprocess
import sys

import yaml

from unit.chart import chartkit

RENDERER = chartkit.CHART / "hack" / "render_readme.py"


def _leaves(tree: dict[str, object], prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _leaves(value, f"{path}.")
        else:
            out.add(path)
    return out


def test_the_checked_in_readme_is_what_values_yaml_renders() -> None:
    result = subprocess.run(
        [sys.executable, str(RENDERER), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_value_is_documented() -> None:
    sys.path.insert(0, str(RENDERER.parent))
    import render_readme

    text = (chartkit.CHART / "values.yaml").read_text()
    documented = {v.key for v in render_readme.values(text)}
    # a value is documented itself, or (a map meant to be filled in) through its parent
    missing = {
        leaf
        for leaf in _leaves(yaml.safe_load(text))
        if not any(leaf == d or leaf.startswith(f"{d}.") for d in documented)
    }
    assert not missing, f"values.yaml keys without a `# --` comment: {sorted(missing)}"


def test_type_hints_and_default_overrides() -> None:
    sys.path.insert(0, str(RENDERER.parent))
    import render_readme

    rows = render_readme.values(
        "a:\n  # -- (int) how many\n  # @default -- computed\n  b: null\n# -- plain\nc: [1]\nd:\n  e: 1\n"
    )
    assert rows == [
        render_readme.Value("a.b", "int", "computed", "how many"),
        render_readme.Value("c", "list", "`[1]`", "plain"),
    ]
