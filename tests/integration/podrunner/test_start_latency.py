"""How long from a pod's binding to its process running: measured and reported, never asserted
(a timing threshold would flake on two shared cores). The autoscaler benchmarks depend on it.

The binding time is when an independent ``kubectl get pods -w`` sees ``spec.nodeName`` set —
the same watch delivery the runner has to wait for — and the start time is what the process
itself writes first. ``PODRUNNER_LATENCY_PODS`` (default 20) sets the number of pods, all
scheduled at once by one Deployment::

    PODRUNNER_LATENCY_PODS=100 .venv/bin/pytest tests/integration/podrunner/test_start_latency.py -s
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time

from podrunner_lab import Lab

import devenv
import podrunner

PODS = int(os.environ.get("PODRUNNER_LATENCY_PODS", "20"))


def test_pod_scheduled_to_process_started_latency(
    lab: Lab, runner: podrunner.PodRunner, binaries: devenv.Binaries
) -> None:
    bound: dict[str, float] = {}
    watch = subprocess.Popen(
        [
            binaries.path("kubectl"),
            "--kubeconfig",
            str(lab.cluster.kubeconfig),
            "-n",
            lab.namespace,
            "get",
            "pods",
            "-w",
            "--output-watch-events",
            "-o",
            'jsonpath={.type} {.object.metadata.name} {.object.spec.nodeName}{"\\n"}',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watch.stdout is not None
    stream = watch.stdout

    def read() -> None:
        for line in stream:
            parts = line.split()
            if len(parts) == 3 and parts[1] not in bound:
                bound[parts[1]] = time.time()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(1)  # let the watch establish before anything happens
        lab.apply(
            lab.deployment(
                "burst", ["sh", "-c", 'date +%s.%N > "$OUT/$POD_NAME.t"; exec sleep 1000'], replicas=PODS
            )
        )
        started = lab.wait(
            f"{PODS} processes",
            lambda: len(t := lab.files("t")) == PODS and all(t.values()) and t,
            timeout=300,
        )
        lab.wait("every binding seen", lambda: set(started) <= set(bound))
    finally:
        watch.terminate()
        watch.wait(10)

    latencies = sorted(float(started[pod]) - bound[pod] for pod in started)
    spread = max(bound.values()) - min(bound.values())
    print(
        f"\npod bound -> process started, {PODS} pods bound within {spread:.2f}s: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p90 {latencies[int(0.9 * (len(latencies) - 1))] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    assert len(latencies) == PODS
