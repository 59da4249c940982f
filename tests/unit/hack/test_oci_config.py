"""The pod runner's container mode: a pod's container as an OCI runtime configuration
(hack/podrunner_oci.py), by the kubelet's and containerd's rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

import podrunner_oci as oci

IMAGE = {
    "Entrypoint": ["/entry"],
    "Cmd": ["serve", "--port=1"],
    "User": "65532:65532",
    "Env": ["PATH=/opt/app/bin:/usr/bin", "MODE=image"],
}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:\n"


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (None, None, ["/entry", "serve", "--port=1"]),  # the image's ENTRYPOINT + CMD
        (None, ["once"], ["/entry", "once"]),  # args replace CMD only
        (["run"], None, ["run"]),  # command drops both
        (["run"], ["a", "b"], ["run", "a", "b"]),
    ],
)
def test_command_and_args_replace_entrypoint_and_cmd_as_kubernetes_does(
    command: list[str] | None, args: list[str] | None, expected: list[str]
) -> None:
    assert oci.argv(command, args, IMAGE) == expected


def test_no_command_anywhere_is_a_config_error() -> None:
    with pytest.raises(oci.ContainerConfigError, match="no command specified"):
        oci.argv(None, None, {})


def test_env_layers_image_then_base_then_pod() -> None:
    env = oci.merged_env(IMAGE["Env"], {"HOSTNAME": "p", "MODE": "base"}, {"MODE": "pod", "X": "1"})
    assert env == ["PATH=/opt/app/bin:/usr/bin", "MODE=pod", "HOSTNAME=p", "X=1"]
    assert oci.merged_env([], {}, {}) == [f"PATH={oci.DEFAULT_PATH}"]


def test_security_context_of_the_container_wins_over_the_pods() -> None:
    sec = oci.Security.of(
        {
            "runAsUser": 1,
            "runAsGroup": 2,
            "runAsNonRoot": True,
            "fsGroup": 3,
            "supplementalGroups": [4],
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        {
            "runAsUser": 5,
            "seccompProfile": {"type": "Unconfined"},
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        },
    )
    assert (sec.run_as_user, sec.run_as_group, sec.run_as_non_root) == (5, 2, True)
    assert sec.seccomp == "Unconfined"
    assert (sec.read_only_root, sec.allow_privilege_escalation) == (True, False)
    assert (sec.drop, sec.add) == (("ALL",), ("NET_BIND_SERVICE",))
    assert (sec.fs_group, sec.supplemental_groups) == (3, (4,))


def test_user_precedence_and_groups() -> None:
    assert oci.user(oci.Security(), "65532:65532") == {"uid": 65532, "gid": 65532}
    assert oci.user(oci.Security(run_as_user=7), "65532:65532") == {"uid": 7, "gid": 65532}
    assert oci.user(
        oci.Security(run_as_user=7, run_as_group=8, fs_group=9, supplemental_groups=(8, 10)), ""
    ) == {"uid": 7, "gid": 8, "additionalGids": [9, 10]}
    assert oci.user(oci.Security(), "app", PASSWD, GROUP) == {"uid": 1000, "gid": 1001}  # primary group
    assert oci.user(oci.Security(), "app:staff", PASSWD, GROUP) == {"uid": 1000, "gid": 50}
    assert oci.user(oci.Security(), "") == {"uid": 0, "gid": 0}


def test_run_as_non_root_refuses_root_and_unverifiable_users_with_the_kubelets_words() -> None:
    with pytest.raises(
        oci.ContainerConfigError, match=r"^container has runAsNonRoot and image will run as root$"
    ):
        oci.user(oci.Security(run_as_non_root=True), "")
    with pytest.raises(oci.ContainerConfigError, match="non-numeric user \\(nobody\\)"):
        oci.user(oci.Security(run_as_non_root=True), "nobody", PASSWD)
    with pytest.raises(oci.ContainerConfigError, match="unable to find user ghost"):
        oci.user(oci.Security(), "ghost", PASSWD)
    assert oci.user(oci.Security(run_as_non_root=True), "app", PASSWD)["uid"] == 1000


def test_capabilities_start_from_containerds_default_set() -> None:
    default = oci.capabilities(oci.Security())
    assert default["bounding"] == list(oci.DEFAULT_CAPABILITIES) == default["effective"]
    assert default["ambient"] == default["inheritable"] == []
    dropped = oci.capabilities(oci.Security(drop=("ALL",), add=("NET_BIND_SERVICE",)))
    assert dropped["bounding"] == ["CAP_NET_BIND_SERVICE"]
    assert "CAP_KILL" not in oci.capabilities(oci.Security(drop=("kill",)))["permitted"]
    assert "CAP_SYS_PTRACE" in oci.capabilities(oci.Security(add=("CAP_SYS_PTRACE",)))["permitted"]
    with pytest.raises(oci.ContainerConfigError, match="privileged"):
        oci.capabilities(oci.Security(privileged=True))


def test_seccomp_profiles() -> None:
    assert oci.seccomp(None) is None
    assert oci.seccomp("Unconfined") is None
    profile = oci.seccomp("RuntimeDefault")
    assert profile is not None
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    (rule,) = profile["syscalls"]
    assert {"mount", "unshare", "setns", "ptrace", "bpf", "kexec_load"} <= set(rule["names"])
    assert (rule["action"], rule["errnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    with pytest.raises(oci.ContainerConfigError, match="'Localhost' is not supported"):
        oci.seccomp("Localhost")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("1e3", Decimal(1000)),
        (3, Decimal(3)),
        ("100k", Decimal(100_000)),
    ],
)
def test_quantities(text: str | int, value: Decimal) -> None:
    assert oci.quantity(text) == value


def test_a_bad_quantity_names_itself() -> None:
    with pytest.raises(oci.ContainerConfigError, match="invalid resource quantity '12 apples'"):
        oci.quantity("12 apples")


def test_limits_become_the_cgroups_memory_limit_and_cfs_quota() -> None:
    res = oci.resources({"memory": "64Mi", "cpu": "250m"})
    assert res["memory"] == {"limit": 64 * 2**20}
    assert res["cpu"] == {"quota": 25_000, "period": 100_000}
    assert oci.resources({"cpu": "1m"})["cpu"]["quota"] == oci.MIN_CFS_QUOTA_US
    assert set(oci.resources(None)) == {"devices"}  # no limits: nothing enforced (requests never are)


def test_runtime_config_of_a_restricted_container() -> None:
    security = oci.Security(
        run_as_user=65532,
        run_as_group=65532,
        run_as_non_root=True,
        read_only_root=True,
        allow_privilege_escalation=False,
        drop=("ALL",),
        seccomp="RuntimeDefault",
    )
    config = oci.runtime_config(
        oci.Container(
            argv=["jobqueue", "worker"],
            env=["A=1"],
            user={"uid": 65532, "gid": 65532},
            security=security,
            hostname="pod-1",
            mounts=[
                oci.Mount("/tmp/cache", "/host/cache"),
                oci.Mount("/tmp", "/host/tmp"),
                oci.Mount("/scratch", size=1024),
            ],
            limits={"memory": "1Gi"},
            cgroup="jobqueue-podrunner/c1",
            nofile=(4096, 8192),
        )
    )
    process = config["process"]
    assert (process["args"], process["user"], process["noNewPrivileges"]) == (
        ["jobqueue", "worker"],
        {"uid": 65532, "gid": 65532},
        True,
    )
    assert process["capabilities"]["bounding"] == []
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192}]
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["hostname"] == "pod-1"
    namespaces = {n["type"] for n in config["linux"]["namespaces"]}
    assert "network" not in namespaces  # host network
    assert {"pid", "mount", "uts", "ipc"} <= namespaces
    assert config["linux"]["resources"]["memory"] == {"limit": 2**30}
    assert config["linux"]["cgroupsPath"] == "jobqueue-podrunner/c1"
    assert "seccomp" in config["linux"]
    volumes = [
        m["destination"] for m in config["mounts"] if m["destination"] in ("/tmp", "/tmp/cache", "/scratch")
    ]
    assert volumes == ["/tmp", "/scratch", "/tmp/cache"]  # parents first: /tmp must not hide /tmp/cache
    scratch = next(m for m in config["mounts"] if m["destination"] == "/scratch")
    assert scratch["type"] == "tmpfs"
    assert "size=1024" in scratch["options"]
