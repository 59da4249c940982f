"""The /etc/hosts a container-mode pod gets (hack/podrunner_containers.py): the kubelet's lines
and the ``kubernetes`` Service's names at the runner's stand-in for its virtual IP."""

from __future__ import annotations

import podrunner_containers


def test_the_hosts_file_names_localhost_the_pod_and_the_api_service() -> None:
    text = podrunner_containers.hosts_file("worker-1", "10.0.0.7", "127.99.1.2")
    entries = {
        line.split("\t")[0]: line.split("\t")[1].split()
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert entries["127.0.0.1"] == ["localhost"]
    assert entries["10.0.0.7"] == ["worker-1"]
    assert entries["127.99.1.2"] == [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]


def test_a_pod_without_an_ip_yet_gets_no_line_for_it() -> None:
    text = podrunner_containers.hosts_file("worker-1", "", "127.99.1.2")
    assert "worker-1" not in text
