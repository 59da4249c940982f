"""hack/system-deps.sh decides what to install, and how, from what the machine has.

Each case runs the real script under bash with a PATH of stand-in commands: ``apt-get``
records its arguments and "installs" a package by creating its commands, ``id`` reports the
uid a case asks for, ``sudo`` exists only where a case grants it. The script's own logic —
which packages, whether it may install, what it says — is what is tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "hack" / "system-deps.sh"
#: What each Debian package provides, for the stand-in apt-get.
PROVIDES = {
    "redis-server": ["redis-server"],
    "redis-sentinel": ["redis-sentinel"],
    "prometheus": ["prometheus", "promtool"],
    "chromium": ["chromium"],
    "openssl": ["openssl"],
    "mmdebstrap": ["mmdebstrap"],
    "buildah": ["buildah"],
    "umoci": ["umoci"],
    "runc": ["runc"],
}
#: The image build's and the container mode's tools: present unless a case asks otherwise, so
#: the other cases read as about the servers.
IMAGE_TOOLS = ("mmdebstrap", "buildah", "umoci", "runc")
#: The packages of the servers and the browser, in the script's order (what a bare machine lacks).
SERVERS = "redis-server redis-sentinel prometheus chromium openssl"
#: Their commands, all present.
ALL_SERVERS = ("redis-server", "redis-sentinel", "prometheus", "promtool", "chromium", "openssl")
EXTERNAL = ["dirname", "mkdir", "date", "env", "cat", "true", "chmod"]


@dataclass
class Run:
    code: int
    stderr: str
    apt_calls: list[str]

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def executable(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path: Path):  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in EXTERNAL:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    calls = tmp_path / "apt-calls"

    def make(
        *,
        have: tuple[str, ...] = (),
        uid: int = 0,
        apt: bool = True,
        sudo: bool = False,
        apt_fails: bool = False,
        brings: tuple[str, ...] = ("go", "npm", "python3"),
        image_tools: bool = True,
    ) -> Path:
        for cmd in (*have, *brings, *(IMAGE_TOOLS if image_tools else ())):
            executable(bin_dir / cmd, "exit 0\n")
        executable(bin_dir / "id", f'[ "$1" = -u ] && echo {uid}\n')
        if sudo:
            executable(bin_dir / "sudo", '[ "$1" = -n ] && shift\nexec "$@"\n')
        if apt:
            installs = "".join(
                f'    {pkg}) for c in {" ".join(cmds)}; do printf "#!/bin/bash\\nexit 0\\n" > "{bin_dir}/$c";'
                f' chmod +x "{bin_dir}/$c"; done ;;\n'
                for pkg, cmds in PROVIDES.items()
            )
            executable(
                bin_dir / "apt-get",
                f'echo "$*" >> "{calls}"\n'
                + ("exit 100\n" if apt_fails else "")
                + '[ "$1" = install ] || exit 0\nfor p in "$@"; do case "$p" in\n'
                + installs
                + "  esac; done\n",
            )
        return bin_dir

    return make


def run(bin_dir: Path, *args: str) -> Run:
    log = bin_dir.parent / "deps.log"
    proc = subprocess.run(
        ["/bin/bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "JOBQUEUE_DEPS_LOG": str(log)},
        check=False,
    )
    calls = bin_dir.parent / "apt-calls"
    assert proc.stdout == ""
    return Run(proc.returncode, proc.stderr, calls.read_text().splitlines() if calls.exists() else [])


def test_everything_present_is_silent_and_installs_nothing(machine) -> None:  # type: ignore[no-untyped-def]
    r = run(machine(have=ALL_SERVERS))
    assert (r.code, r.stderr, r.apt_calls) == (0, "", [])


def test_the_image_tools_are_installed_when_missing(machine) -> None:  # type: ignore[no-untyped-def]
    bin_dir = machine(have=ALL_SERVERS, image_tools=False)
    r = run(bin_dir)
    assert r.code == 0, r.stderr
    assert r.apt_calls[-1] == "install -y -q --no-install-recommends mmdebstrap buildah umoci runc"
    assert all((bin_dir / tool).exists() for tool in IMAGE_TOOLS)


def test_root_with_apt_installs_exactly_the_missing_packages(machine) -> None:  # type: ignore[no-untyped-def]
    bin_dir = machine(have=("redis-server", "redis-sentinel", "chromium", "openssl"))
    r = run(bin_dir)
    assert r.code == 0, r.stderr
    log = bin_dir.parent / "deps.log"
    assert r.lines == [f"jobqueue: installing prometheus from Debian's packages (log: {log})"]
    assert r.apt_calls == ["update -q", "install -y -q --no-install-recommends prometheus"]
    assert (bin_dir / "promtool").exists()
    assert run(bin_dir).stderr == ""  # idempotent: the second run finds everything


def test_a_package_is_named_once_however_many_of_its_commands_are_missing(machine) -> None:  # type: ignore[no-untyped-def]
    r = run(machine())
    assert r.apt_calls[-1] == f"install -y -q --no-install-recommends {SERVERS}"


def test_not_root_with_passwordless_sudo_installs_through_sudo(machine) -> None:  # type: ignore[no-untyped-def]
    r = run(machine(uid=1000, sudo=True))
    assert r.code == 0, r.stderr
    assert r.apt_calls[-1].endswith(SERVERS)


def test_not_root_without_sudo_says_what_to_run(machine) -> None:  # type: ignore[no-untyped-def]
    r = run(machine(uid=1000))
    assert r.code == 2
    assert r.lines == [
        f"jobqueue: missing system packages: {SERVERS}; not root and no password-less sudo, "
        f"so install them yourself: sudo apt-get install -y {SERVERS}"
    ]
    assert r.apt_calls == []


def test_no_apt_names_the_packages(machine) -> None:  # type: ignore[no-untyped-def]
    r = run(machine(apt=False, have=("redis-sentinel", "prometheus", "promtool")))
    assert r.code == 2
    assert len(r.lines) == 1
    assert "redis-server" in r.lines[0]
    assert "no apt-get" in r.lines[0]


def test_a_failed_install_points_at_its_log(machine) -> None:  # type: ignore[no-untyped-def]
    bin_dir = machine(apt_fails=True)
    r = run(bin_dir)
    log = bin_dir.parent / "deps.log"
    assert r.code == 1
    assert r.lines[-1] == f"jobqueue: apt-get could not install {SERVERS} (exit 100); see {log}"
    assert f"apt-get install {SERVERS}" in log.read_text()


def test_check_only_reports_and_installs_nothing(machine) -> None:  # type: ignore[no-untyped-def]
    r = run(machine(), "--check")
    assert r.code == 2
    assert r.apt_calls == []
    assert r.lines == [
        f"jobqueue: missing system packages: {SERVERS} (install them with: sudo apt-get install -y {SERVERS})"
    ]


@pytest.mark.parametrize("tool", ["go", "npm", "python3"])
def test_what_the_user_brings_is_checked_first(machine, tool: str) -> None:  # type: ignore[no-untyped-def]
    others = tuple(t for t in ("go", "npm", "python3") if t != tool)
    r = run(machine(brings=others))
    assert r.code == 2
    assert r.apt_calls == []
    assert len(r.lines) == 1
    assert r.lines[0].startswith("jobqueue: ")
    assert {"go": "Go >= 1.26", "npm": "npm", "python3": "Python >= 3.11"}[tool] in r.lines[0]


def test_the_script_is_what_make_and_ci_call_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "demo", "dev-up"):
        line = next(ln for ln in makefile.splitlines() if ln.startswith(f"{target}:"))
        assert line.split(":", 1)[1].split()[0] == "deps", line
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("hack/system-deps.sh") < ci.index("make setup")
    assert os.access(SCRIPT, os.X_OK)
