"""The images ``make image`` builds (hack/images.py), as they are: what the runtime image holds
and lacks, who it runs as, and that the demo's worker image is the project's image plus the
job module and nothing else."""

from __future__ import annotations

import json
import subprocess
import tarfile

import images


def test_the_operator_image_runs_as_65532_and_holds_no_build_tools(built_images: images.Store) -> None:
    operator = built_images.lookup(images.OPERATOR.ref)
    assert operator is not None
    config = operator.config()
    assert config["User"] == "65532:65532"
    assert config["Cmd"] == ["jobqueue-operator"]
    root = operator.rootfs
    assert (root / "opt/jobqueue/bin/jobqueue-operator").exists()
    assert (root / "opt/jobqueue/bin/jobqueue").exists()
    tools = [
        "usr/bin/apt-get",
        "usr/bin/gcc",
        "usr/bin/cc",
        "usr/bin/make",
        "usr/bin/pip3",
        "opt/jobqueue/bin/pip",
    ]
    assert [t for t in tools if (root / t).exists()] == []
    assert list(root.glob("opt/jobqueue/lib/python3*/site-packages/pip")) == []
    assert list(root.glob("usr/lib/python3*/ensurepip")) == []  # python3-venv is the build stage's only
    # the project's own code runs in the image's Python
    # the project's own code runs in the image's Python, as a uid with a name (kopf asks for it)
    code = "import getpass, jobqueue, jobqueue_operator, kopf, rq; print(rq.__version__, getpass.getuser())"
    result = subprocess.run(
        ["/usr/sbin/chroot", "--userspec=65532:65532", str(root), "/opt/jobqueue/bin/python", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2.12.0", "nonroot"]


def test_the_archive_is_an_oci_image_of_its_reference(built_images: images.Store) -> None:
    operator = built_images.lookup(images.OPERATOR.ref)
    assert operator is not None
    with tarfile.open(operator.archive) as tar:
        index = json.load(tar.extractfile("./index.json") or b"")
    (manifest,) = index["manifests"]
    assert manifest["digest"] == operator.digest
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == images.OPERATOR.ref


def test_the_worker_image_is_the_operator_image_plus_the_job_module(built_images: images.Store) -> None:
    operator = built_images.lookup(images.OPERATOR.ref)
    worker = built_images.lookup(images.GLEC_JOBS.ref)
    assert operator is not None
    assert worker is not None
    module = (images.ROOT / "examples/glec_jobs.py").read_bytes()
    assert (worker.rootfs / "app/glec_jobs.py").read_bytes() == module
    assert "PYTHONPATH=/app" in worker.config()["Env"]
    assert worker.config()["User"] == operator.config()["User"]
    layers = json.loads((worker.dir / "image-config.json").read_text())["rootfs"]["diff_ids"]
    parent = json.loads((operator.dir / "image-config.json").read_text())["rootfs"]["diff_ids"]
    assert layers[: len(parent)] == parent  # built FROM it: the same layers, then its own
    assert len(layers) == len(parent) + 1
