"""``python -m jobqueue_operator.monitoring [--check] [--root DIR]``.

Writes the dashboard JSON and the alert rule file into ``manifests/monitoring/`` and the
chart's ``files/``; ``--check`` writes nothing and exits 1 when a checked-in file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobqueue_operator.monitoring import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=generate.COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="the repository root (default: the current directory)"
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; fail when a generated file is out of date"
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    if not (root / "helm" / "jobqueue-operator" / "Chart.yaml").exists():
        parser.error(
            f"{root} is not the repository root (no helm/jobqueue-operator/Chart.yaml); "
            "run from there or pass --root"
        )
    if args.check:
        stale = generate.drift(root)
        for rel in stale:
            print(f"{rel} is out of date: run `make generate`", file=sys.stderr)
        return 1 if stale else 0
    for rel in generate.write(root):
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
