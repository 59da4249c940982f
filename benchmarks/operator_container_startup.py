"""Start-up of the operator pod in its image under runc, against the same pod as a host process.

    .venv/bin/python benchmarks/operator_container_startup.py [--restarts 11]

The chart installed twice in one cluster, each namespace with a pod runner of its own:

* **ours**: container mode — the operator pod runs from the image ``make image`` builds
  (``registry.example/jobqueue-operator``), under runc, with the chart's securityContext
  (uid 65532, read-only root, no capabilities, RuntimeDefault seccomp), its token mounted;
* **baseline, same run**: process mode — the same pod's command as a host process of the
  project's virtualenv (what the pod runner did before it ran images).

Each run force-deletes the operator pod (``--grace-period=0 --force``) and times it until the
new pod answers ``/healthz``: the ReplicaSet's new pod, scheduling, the runner's start, Python
and kopf starting, the first watches. Prints the median and the worst of each and their ratio
(goal: the container costs at most 1.5× the host process); last line: JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import e2e_benchlib as el
import operator_benchlib as bl


def restarts(setup: el.Installed, count: int) -> list[float]:
    seconds: list[float] = []
    for _ in range(count):
        t0 = time.monotonic()
        old = setup.product.restart(force=True)
        setup.product.wait_live(exclude=[old], timeout=120)
        seconds.append(round(time.monotonic() - t0, 3))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=11)  # medians of 5 swing ±50 % on a loaded machine
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "operator_container_startup", "restarts": args.restarts}
    with bl.environment() as environment:
        for mode in ("container", "process"):
            with el.installed(f"start-{mode[:4]}", environment=environment, mode=mode) as setup:
                bl.log(f"{mode} mode: {args.restarts} forced restarts of the operator pod")
                info = setup.product.operator_process()
                assert info is not None
                assert (info.container is not None) == (mode == "container"), info
                result[mode] = restarts(setup, args.restarts)
    for mode in ("container", "process"):
        values = result[mode]
        print(
            f"{mode:9s}: pod deleted → new operator answering /healthz: "
            f"median {statistics.median(values):.2f} s, worst {max(values):.2f} s "
            f"({', '.join(f'{v:.2f}' for v in values)})"
        )
    ratio = statistics.median(result["container"]) / statistics.median(result["process"])
    result["median_container_s"] = statistics.median(result["container"])
    result["median_process_s"] = statistics.median(result["process"])
    result["ratio"] = round(ratio, 3)
    print(f"container / process: {ratio:.2f}×")
    el.conclude(result, "container start-up ≤ 1.5 × the host process's", ratio <= 1.5)


if __name__ == "__main__":
    main()
