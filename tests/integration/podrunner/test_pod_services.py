"""Container mode's stand-in for Services (hack/podrunner_services.py): a pod reaches another
by its Service's name, at the pod the selector picks when the connection is made, and a
declared container port is given a host port of its own so that two such pods never collide."""

from __future__ import annotations

from typing import Any

from podrunner_lab import Lab, state_of

import images
import podrunner

#: Listens on $ECHO_PORT and answers each connection with the name of its pod.
SERVER = """
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["ECHO_PORT"])))
s.listen()
while True:
    c, _ = s.accept()
    c.sendall(os.environ["POD_NAME"].encode())
    c.close()
"""

#: Asks each host:port of argv (retrying while the name or the backend is not there yet) and
#: writes the answers to $OUT/<pod>.answers, one per line.
CLIENT = """
import os, socket, sys, time
answers = []
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as c:
                answer = c.recv(200).decode()
            if answer:
                break
        except OSError as e:
            answer = repr(e)
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    answers.append(f"{target} {answer}")
open(os.path.join(os.environ["OUT"], os.environ["POD_NAME"] + ".answers"), "w").write("\\n".join(answers))
"""


def echo_deployment(lab: Lab) -> dict[str, Any]:
    return lab.deployment(
        "echo",
        ["python3", "-c", SERVER],
        env=[{"name": "ECHO_PORT", "value": "7000"}],
        container={"image": images.OPERATOR.ref, "ports": [{"name": "echo", "containerPort": 7000}]},
    )


def ask(lab: Lab, containers: podrunner.PodRunner, client: str, *targets: str) -> dict[str, str]:
    lab.apply(lab.in_image(client, f"python3 -c '{CLIENT}' {' '.join(targets)}"))
    info = lab.wait(
        f"{client} to finish",
        lambda: (i := state_of(containers, client)) is not None and i.last_exit_code is not None and i,
    )
    assert info.last_exit_code == 0, info.log_file.read_text()
    answers = lab.files("answers")[client]
    return dict(line.split(" ", 1) for line in answers.splitlines())


def running_echo(lab: Lab, containers: podrunner.PodRunner) -> podrunner.ProcessInfo:
    def running() -> podrunner.ProcessInfo | None:
        names = lab.pod_names("echo")
        return next((p for p in containers.snapshot() if p.name in names and p.state == "running"), None)

    info: podrunner.ProcessInfo = lab.wait("an echo pod running", running)
    return info


def test_a_pod_reaches_a_service_by_name_at_the_pod_it_selects_then_at_its_replacement(
    lab: Lab, containers: podrunner.PodRunner
) -> None:
    ns = lab.namespace
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "echo"}]},
        },
        echo_deployment(lab),
    )
    first = running_echo(lab, containers)
    # the declared port 7000 was not taken on the host: the process got a free port instead
    assert first.ports["ECHO_PORT"] != 7000
    answers = ask(
        lab,
        containers,
        "client-1",
        "echo:80",
        f"echo.{ns}:80",
        f"echo.{ns}.svc:80",
        f"echo.{ns}.svc.cluster.local:80",
    )
    assert set(answers.values()) == {first.name}, answers

    lab.kubectl("delete", "pod", first.name, "--wait=false")
    second = lab.wait(
        "a replacement echo pod running",
        lambda: (p := running_echo(lab, containers)).name != first.name and p,
    )
    answers = ask(lab, containers, "client-2", f"echo.{ns}.svc:80")
    assert answers == {f"echo.{ns}.svc:80": second.name}


def test_the_hosts_file_follows_services_that_come_and_go(lab: Lab, containers: podrunner.PodRunner) -> None:
    ns = lab.namespace
    lab.apply(
        lab.in_image("watcher", "while true; do cp /etc/hosts $OUT/hosts; sleep 0.2; done", restart="Always")
    )
    lab.wait("the watcher running", lambda: (i := state_of(containers, "watcher")) and i.state == "running")
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "late"},
            "spec": {"selector": {"app": "late"}, "ports": [{"port": 6379}]},
        }
    )

    def hosts() -> str:
        path = lab.out / "hosts"
        return path.read_text() if path.exists() else ""

    lab.wait("the new Service's names in the running pod's /etc/hosts", lambda: f"late.{ns}.svc" in hosts())
    line = next(ln for ln in hosts().splitlines() if f"late.{ns}.svc" in ln)
    names = [f"late.{ns}.svc.cluster.local", f"late.{ns}.svc", f"late.{ns}", "late"]
    assert line.split("\t")[1].split() == names
    assert "kubernetes.default.svc" in hosts()  # the API server's stand-in stays
    lab.kubectl("delete", "service", "late")
    lab.wait(
        "the deleted Service's names gone",
        lambda: "kubernetes.default.svc" in hosts() and f"late.{ns}.svc" not in hosts(),
    )
