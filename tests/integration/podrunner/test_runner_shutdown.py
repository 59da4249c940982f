"""However the runner ends — stopped as a library, SIGTERMed or even SIGKILLed as a subprocess —
it leaves no child processes behind."""

from __future__ import annotations

import signal
from pathlib import Path

from podrunner_lab import Lab, alive

import podrunner

# Records its pid and that of a background grandchild in the same process group; on SIGTERM
# records that and exits (leaving the grandchild, as a careless entrypoint would).
PARENT = r"""
sleep 1000 & echo $! > "$OUT/$POD_NAME.child"
echo $$$$ > "$OUT/$POD_NAME.pid"
trap 'echo TERM > "$OUT/$POD_NAME.term"; exit 0' TERM
while :; do sleep 0.1; done
"""


def started(lab: Lab, replicas: int) -> list[int]:
    lab.wait(
        f"{replicas} processes and their children",
        lambda: len(lab.files("pid")) == replicas and len(lab.files("child")) == replicas,
    )
    pids = [int(p) for p in [*lab.files("pid").values(), *lab.files("child").values()]]
    assert all(alive(pid) for pid in pids)
    return pids


def test_stopping_the_library_runner_stops_every_process(lab: Lab, runner_config: podrunner.Config) -> None:
    runner = podrunner.PodRunner(runner_config).start()
    try:
        lab.apply(lab.deployment("family", ["sh", "-c", PARENT], replicas=2))
        pids = started(lab, 2)
    finally:
        runner.stop()
    assert not [pid for pid in pids if alive(pid)]  # stop() returns only when all are gone
    assert len(lab.files("term")) == 2  # gracefully: SIGTERM first


def test_sigterm_to_the_cli_runner_stops_every_process(
    lab: Lab, runner_config: podrunner.Config, tmp_path: Path
) -> None:
    proc = podrunner.spawn(runner_config, log_file=tmp_path / "runner.log")
    try:
        lab.apply(lab.deployment("family", ["sh", "-c", PARENT], replicas=2))
        pids = started(lab, 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    assert not [pid for pid in pids if alive(pid)]
    assert len(lab.files("term")) == 2
    log = (tmp_path / "runner.log").read_text()
    assert "SIGTERM: stopping every process" in log


def test_a_sigkilled_cli_runner_takes_the_pods_main_processes_with_it(
    lab: Lab, runner_config: podrunner.Config, tmp_path: Path
) -> None:
    proc = podrunner.spawn(runner_config, log_file=tmp_path / "runner.log")
    try:
        lab.apply(
            lab.deployment(
                "orphans", ["sh", "-c", 'echo $$$$ > "$OUT/$POD_NAME.pid"; exec sleep 1000'], replicas=2
            )
        )
        pids = lab.wait("two processes", lambda: len(p := lab.files("pid")) == 2 and p)
        proc.kill()
        proc.wait(60)
    finally:
        proc.kill()
    # no cleanup code ran: PR_SET_PDEATHSIG has the kernel kill each pod's main process (a
    # process it forked in the background would survive: see docs/development.md)
    lab.wait(
        "the pods' processes to die with the runner",
        lambda: not any(alive(int(pid)) for pid in pids.values()),
    )


# On SIGTERM takes 2 s to finish its work, then records that it did.
SLOW_TO_STOP = r"""
echo $$$$ > "$OUT/$POD_NAME.pid"
trap 'sleep 2; echo done > "$OUT/$POD_NAME.finished"; exit 0' TERM
while :; do sleep 0.1; done
"""


def test_a_runner_stopped_while_a_pod_terminates_still_grants_its_grace_period(
    lab: Lab, runner_config: podrunner.Config
) -> None:
    # kwok deletes a terminating pod a second time with grace 0 as soon as it is asked to
    # delete it: that 0 must not become the runner shutdown's grace period for the process
    runner = podrunner.PodRunner(runner_config).start()
    try:
        lab.apply(lab.pod("slow", ["sh", "-c", SLOW_TO_STOP], terminationGracePeriodSeconds=30))
        lab.wait("the process", lambda: lab.files("pid").get("slow"))
        lab.kubectl("delete", "pod", "slow", "--wait=true", "--timeout=60s")  # gone from the API
    finally:
        runner.stop()
    assert lab.files("finished") == {"slow": "done"}  # SIGTERM, then its 2 s (≤ shutdown_grace 5 s)
