"""Processes follow their pods: started when scheduled, SIGTERM then SIGKILL when deleted (the
grace period honoured even after kwok has removed the object), restarted per restartPolicy."""

from __future__ import annotations

import itertools

from podrunner_lab import Lab, alive, state_of

import podrunner

# A worker stand-in: records its pid; on SIGTERM records that, then "finishes its work" —
# which lasts until the test creates $OUT/release — and exits 0. (`$$$$` because Kubernetes
# expands `$(VAR)` in commands and `$$` is its escape for `$`: the shell sees `$$`.)
WORKER = r"""
echo $$$$ > "$OUT/$POD_NAME.pid"
trap 'echo TERM > "$OUT/$POD_NAME.term"
      while [ ! -e "$OUT/release" ]; do sleep 0.1; done
      echo done > "$OUT/$POD_NAME.finished"; exit 0' TERM
while :; do sleep 0.1; done
"""


def test_scaling_a_deployment_starts_and_gracefully_stops_processes(
    lab: Lab, runner: podrunner.PodRunner
) -> None:
    lab.apply(lab.deployment("workers", ["sh", "-c", WORKER], replicas=1))
    lab.wait("one process", lambda: len(lab.files("pid")) == 1)

    lab.kubectl("scale", "deployment/workers", "--replicas=3")
    pids = lab.wait("three processes", lambda: len(p := lab.files("pid")) == 3 and p)
    assert set(pids) == lab.pod_names("workers")
    assert all(alive(int(pid)) for pid in pids.values())

    lab.kubectl("scale", "deployment/workers", "--replicas=1")
    termed = lab.wait("two processes to get SIGTERM", lambda: len(t := lab.files("term")) == 2 and t)
    lab.wait("kwok to remove the two pods", lambda: len(lab.pod_names("workers")) == 1)
    # the API objects are gone, the processes are still finishing their work (grace period: 30 s)
    assert all(alive(int(pids[pod])) for pod in termed)

    (lab.out / "release").touch()
    finished = lab.wait("both to finish their work", lambda: len(f := lab.files("finished")) == 2 and f)
    assert set(finished) == set(termed)
    lab.wait("both to exit", lambda: not any(alive(int(pids[pod])) for pod in termed))
    (survivor,) = set(pids) - set(termed)
    assert lab.pod_names("workers") == {survivor}
    assert alive(int(pids[survivor]))


def test_grace_period_zero_kills_at_once(lab: Lab, runner: podrunner.PodRunner) -> None:
    lab.apply(lab.pod("victim", ["sh", "-c", WORKER]))
    pid = int(lab.wait("the process", lambda: lab.files("pid").get("victim")))

    lab.kubectl("delete", "pod", "victim", "--grace-period=0", "--force")
    lab.wait("the process to die", lambda: not alive(pid))
    assert "victim" not in lab.files("term")  # SIGKILL, never a SIGTERM
    lab.wait("the runner to forget the pod", lambda: state_of(runner, "victim") is None)


def test_sigkill_follows_when_the_grace_period_runs_out(lab: Lab, runner: podrunner.PodRunner) -> None:
    lab.apply(lab.pod("stubborn", ["sh", "-c", WORKER], terminationGracePeriodSeconds=3))
    pid = int(lab.wait("the process", lambda: lab.files("pid").get("stubborn")))

    lab.kubectl("delete", "pod", "stubborn", "--wait=false")
    lab.wait("SIGTERM", lambda: "stubborn" in lab.files("term"))
    # it never gets its release, so only SIGKILL at the end of the 3 s can end it
    lab.wait("the process to die", lambda: not alive(pid))
    assert "stubborn" not in lab.files("finished")


def test_a_crashing_command_is_restarted_with_backoff(lab: Lab, runner: podrunner.PodRunner) -> None:
    crash = 'python -c "import time; print(time.time())" >> "$OUT/$POD_NAME.starts"; exit 3'
    lab.apply(lab.pod("crasher", ["sh", "-c", crash]))

    starts = lab.wait(
        "four starts", lambda: len(s := lab.files("starts").get("crasher", "").split()) >= 4 and s
    )
    times = [float(t) for t in starts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # backoff 1 s, 2 s, 4 s (the fixture's; the kubelet's is 10 s → 300 s): each start waits
    # at least that long after the previous process ended
    for gap, backoff in zip(gaps, [1.0, 2.0, 4.0], strict=False):
        assert gap >= backoff, (gaps, starts)
    info = state_of(runner, "crasher")
    assert info is not None
    assert info.starts >= 4
    assert info.last_exit_code == 3


def test_restart_policies_never_and_on_failure(lab: Lab, runner: podrunner.PodRunner) -> None:
    count_and_fail_once = (
        'echo run >> "$OUT/$POD_NAME.runs"; [ "$(wc -l < "$OUT/$POD_NAME.runs")" -ge 2 ] && exit 0; exit 1'
    )
    lab.apply(
        lab.pod("never", ["sh", "-c", count_and_fail_once], restartPolicy="Never"),
        lab.pod("onfailure", ["sh", "-c", count_and_fail_once], restartPolicy="OnFailure"),
    )
    never = lab.wait(
        "the Never pod to complete", lambda: (i := state_of(runner, "never")) and i.state == "completed" and i
    )
    assert (never.starts, never.last_exit_code) == (1, 1)
    onfailure = lab.wait(
        "the OnFailure pod to complete",
        lambda: (i := state_of(runner, "onfailure")) and i.state == "completed" and i,
    )
    assert (onfailure.starts, onfailure.last_exit_code) == (2, 0)
    assert lab.files("runs") == {"never": "run", "onfailure": "run\nrun"}


def test_a_job_pod_runs_once_although_kwok_marks_it_succeeded(lab: Lab, runner: podrunner.PodRunner) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"podrunner.test/run": "yes"}},
                "spec": lab.pod_spec(
                    ["sh", "-c", 'sleep 1; echo ran >> "$OUT/job.runs"'], restartPolicy="Never"
                ),
            },
        },
    }
    lab.apply(job)
    pod = lab.wait(
        "the Job's pod",
        lambda: lab.kubectl(
            "get", "pods", "-l", "job-name=once", "-o", "jsonpath={.items[0].metadata.name}", check=False
        ),
    )
    info = lab.wait(
        "its process to complete", lambda: (i := state_of(runner, pod)) and i.state == "completed" and i
    )
    assert (info.starts, info.last_exit_code) == (1, 0)
    assert (lab.out / "job.runs").read_text() == "ran\n"
    phase = lab.kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}")
    assert phase == "Succeeded"  # kwok's doing (pod-complete stage), not the runner's
