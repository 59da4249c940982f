"""Package the chart for an OCI registry: ``helm lint``, then ``helm package`` into ``.cache/chart/``.

    python helm/jobqueue-operator/hack/package_chart.py [--destination DIR] [--helm PATH]   # make chart

Prints the archive's path, and the commands that put it and the operator image (``make
image``'s OCI archive) into your registry (docs/install.md, "From your registry"). Pushing is
left to you: it needs your registry and its credentials.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml
from render_install import CHART, ROOT, find_helm

DESTINATION = ROOT / ".cache" / "chart"


def package(helm: str, destination: Path) -> Path:
    """The chart's archive in ``destination``, after ``helm lint`` passed (strict: warnings fail)."""
    subprocess.run([helm, "lint", "--strict", str(CHART)], check=True, capture_output=True, text=True)
    destination.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [helm, "package", str(CHART), "--destination", str(destination)],
        check=True,
        capture_output=True,
        text=True,
    )
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return destination / f"{meta['name']}-{meta['version']}.tgz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destination", type=Path, default=DESTINATION)
    parser.add_argument("--helm", help="the helm binary")
    args = parser.parse_args(argv)
    try:
        archive = package(find_helm(args.helm), args.destination)
    except subprocess.CalledProcessError as exc:
        print(f"{' '.join(exc.cmd[:2])} failed:\n{exc.stdout}{exc.stderr}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT / "hack"))
    import images  # noqa: PLC0415 (hack/ is put on sys.path just above)

    # every image make image builds: the operator's, the samples' workers' and the bundled
    # Redis's (README quick start), each under its name and tag of registry.example
    copies = []
    for spec in images.IMAGES.values():
        built = images.Store().lookup(spec.ref)
        image = built.archive if built else "<run `make image` first>"
        copies.append(f"  skopeo copy oci-archive:{image} docker://$REGISTRY/{spec.ref.split('/', 1)[1]}")
    print(
        f"{archive}\n\nTo your registry (REGISTRY=registry.example.com/jobqueue):\n"
        f"  helm push {archive} oci://$REGISTRY/charts\n" + "\n".join(copies)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
