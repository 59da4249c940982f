"""The Dockerfile users build: linted, its public base pinned by digest, the runtime stage
running as 65532 and built from nothing but the build stage's virtualenv."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import images

DOCKERFILE = images.ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def stages() -> list[list[str]]:
    """Instructions (continuation lines joined) per stage; the ARGs before the first FROM first."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("FROM "):
            out.append([])
        out[-1].append(line.strip())
    return out


def test_the_dockerfiles_pass_hadolint() -> None:
    files = [
        str(DOCKERFILE),
        str(images.GLEC_JOBS.dockerfile),
        str(images.ROOT / "tests/integration/scaling/Dockerfile"),
    ]
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "style", *files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_public_base_is_pinned_by_digest() -> None:
    (base,) = [line for line in stages()[0] if line.startswith("ARG BASE_IMAGE=")]
    assert re.fullmatch(r"ARG BASE_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}", base)
    assert "ARG BUILD_IMAGE=${BASE_IMAGE}" in stages()[0]


def test_the_runtime_stage_copies_only_the_virtualenv_and_runs_as_named_65532() -> None:
    build, runtime = stages()[1:]
    assert build[0] == "FROM ${BUILD_IMAGE} AS build"
    assert runtime[0] == "FROM ${BASE_IMAGE}"
    copied, named = [i for i in runtime if i.startswith(("RUN", "COPY", "ADD"))]
    assert copied == "COPY --from=build /opt/jobqueue /opt/jobqueue"
    # nothing installed or fetched here: one RUN, shell builtins naming the uid
    assert named.startswith("RUN echo 'nonroot:x:65532:65532:")
    assert [w for w in ("pip", "apt", "curl", "wget", "install") if w in named] == []
    assert "USER 65532:65532" in runtime
    (uninstall,) = [i for i in build if "pip uninstall" in i]
    assert "pip setuptools wheel" in uninstall  # the virtualenv leaves without its build tools
