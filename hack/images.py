"""Build the project's images without a Docker daemon or an image registry (``make image``).

No image registry is reachable from these machines, so nothing can start ``FROM python:…``.
The base comes from Debian's packages instead: ``mmdebstrap`` makes a minimal root filesystem
(python3 and what its runtime needs, no apt, no compiler), imported into buildah's local
storage as ``localhost/jobqueue-base``; a second one that adds ``python3-venv`` (pip) is the
build stage's. ``buildah bud`` then builds the repository's own ``Dockerfile`` with
``--build-arg BASE_IMAGE=… BUILD_IMAGE=…`` — the file users build with Docker, where the
arguments default to the public Python image — and the demo's worker image ``FROM`` it, as
docs/jobs.md tells users to.

Each image ends up under ``.cache/images/<name>/<key>/``: the OCI archive (``image.oci.tar``),
its root filesystem unpacked by umoci (``rootfs/``, what the pod runner's containers run) and
its OCI image configuration (``image-config.json``). ``index.json`` maps image references (what
pod specs name) to those directories; :class:`Store` reads it. The key of an image is a hash of
everything that goes into it: its Dockerfile, the files it copies, its build arguments, the key
of the image it builds ``FROM`` and, for the Debian base, the suite and package list. An image
whose key is already built is not built again (a warm ``make image`` only hashes files).
Debian's package *versions* are not part of the key (the suite is): ``--refresh-base`` rebuilds
the base to pick up Debian's updates; ``packages.txt`` next to it lists what it holds.

    python hack/images.py build [--refresh-base] [NAME …]    # default: every image of IMAGES
    python hack/images.py list                               # what the index holds
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("JOBQUEUE_CACHE", ROOT / ".cache"))
DEFAULT_STORE = CACHE / "images"

DEBIAN_SUITE = "bookworm"
"""The base's Debian release: its python3 is 3.11, the version the Dockerfile's public base has."""

RUNTIME_PACKAGES = ("python3", "ca-certificates", "tzdata", "netbase")
"""What the runtime needs beyond Debian's essential set: the interpreter, CA certificates (TLS
to Redis or the API server), time zones (RecurringJob ``timeZone``), /etc/services."""

BUILD_PACKAGES = ("python3-venv",)
"""Added to the build stage's base only: ``python3 -m venv`` with pip."""

BUILD_ONLY_PURGE = ("python3-venv", "python3.11-venv", "python3-pip-whl", "python3-setuptools-whl")
"""Purged from the build base's file tree to make the runtime base (one mmdebstrap run for both)."""

MMDEBSTRAP_OPTIONS = (
    "--variant=essential",  # no apt, no init: a container has neither
    # usrmerge (bookworm's default way to merge /usr) pulls in perl's 50 MB; this hook merges
    # /usr itself and installs the empty usr-is-merged instead
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
)

PROJECT_VERSION = re.search(
    r'^appVersion:\s*"?([^"\s]+)', (ROOT / "helm/jobqueue-operator/Chart.yaml").read_text(), re.M
)[1]  # type: ignore[index]
"""The chart installs ``image.repository:<appVersion>`` by default: the tag we build."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

UNHASHED = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info|\.mypy_cache|\.pytest_cache)(/|$)|\.pyc$")


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: which Dockerfile, which files go into it, which image it builds on."""

    name: str
    #: the reference pods name (``spec.containers[].image``); the image is tagged with it
    ref: str
    dockerfile: Path
    context: Path
    #: the files and folders the Dockerfile copies (their content is part of the key)
    inputs: tuple[Path, ...]
    #: the image (by :attr:`name`) this one builds FROM, built first
    parent: str | None = None
    #: pass the Debian bases as BASE_IMAGE and BUILD_IMAGE
    debian_base: bool = False
    #: instead: pass as BASE_IMAGE a Debian root filesystem of just these packages (and the
    #: essential set), for an image of a Debian program such as redis-server
    debian_packages: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)


OPERATOR = ImageSpec(
    name="operator",
    ref=f"registry.example/jobqueue-operator:{PROJECT_VERSION}",
    dockerfile=ROOT / "Dockerfile",
    context=ROOT,
    debian_base=True,
    inputs=(
        ROOT / ".dockerignore",
        ROOT / "pyproject.toml",
        ROOT / "README.md",
        ROOT / "operator",
        ROOT / "workers",
    ),
)
GLEC_JOBS = ImageSpec(
    name="glec-jobs",
    ref="registry.example/glec-jobs:1.4.2",
    parent="operator",
    dockerfile=ROOT / "examples/Dockerfile",
    context=ROOT / "examples",
    inputs=(ROOT / "examples/glec_jobs.py",),
)

REDIS = ImageSpec(
    name="redis",
    ref="registry.example/jobqueue-redis:7",
    dockerfile=ROOT / "hack/redis-image/Dockerfile",
    context=ROOT / "hack/redis-image",
    inputs=(ROOT / "hack/redis-image/Dockerfile",),
    debian_packages=("redis-server",),
)
"""What the chart's ``redis.bundled`` runs on the dev cluster (users elsewhere: the official image)."""

IMAGES: dict[str, ImageSpec] = {spec.name: spec for spec in (OPERATOR, GLEC_JOBS, REDIS)}
"""What ``make image`` builds: the image users deploy, the demo's worker image and the Redis
of the chart's quick start."""


# --------------------------------------------------------------------------------------
# Keys


def tree_digest(paths: Iterable[Path], relative_to: Path) -> str:
    """A hash of the names and contents of ``paths`` (files, or folders walked recursively),
    without caches and build debris, so an unchanged tree always gives the same key."""
    h = hashlib.sha256()
    for top in sorted(paths):
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(relative_to).as_posix()
            if UNHASHED.search(rel):
                continue
            h.update(rel.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def base_key() -> str:
    """Key of the Debian bases: what mmdebstrap is asked for, and how."""
    return _digest(
        {
            "suite": DEBIAN_SUITE,
            "runtime": RUNTIME_PACKAGES,
            "build": BUILD_PACKAGES,
            "purge": BUILD_ONLY_PURGE,
            "options": MMDEBSTRAP_OPTIONS,
        }
    )[:16]


def packages_key(packages: Sequence[str]) -> str:
    """Key of a Debian root filesystem of ``packages`` (see :attr:`ImageSpec.debian_packages`)."""
    return _digest({"suite": DEBIAN_SUITE, "packages": sorted(packages), "options": MMDEBSTRAP_OPTIONS})[:16]


def image_key(spec: ImageSpec, parent_key: str | None) -> str:
    base = (
        base_key()
        if spec.debian_base
        else packages_key(spec.debian_packages)
        if spec.debian_packages
        else None
    )
    return _digest(
        {
            "dockerfile": spec.dockerfile.read_text(),
            "args": dict(spec.build_args),
            "files": tree_digest(spec.inputs, spec.context),
            "parent": parent_key,
            "base": base,
            "ref": spec.ref,
        }
    )[:16]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------
# The store the pod runner reads


@dataclass(frozen=True)
class StoredImage:
    """A built image as the pod runner uses it."""

    ref: str
    name: str
    key: str
    #: ``sha256:…`` of the OCI manifest (the image's digest, as ``crictl images --digests``)
    digest: str
    dir: Path

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def archive(self) -> Path:
        return self.dir / "image.oci.tar"

    def config(self) -> dict[str, Any]:
        """The OCI image configuration's ``config`` (Env, Entrypoint, Cmd, User, WorkingDir)."""
        data: dict[str, Any] = json.loads((self.dir / "image-config.json").read_text())
        return dict(data.get("config") or {})


class Store:
    """The images built here, by reference: ``<root>/index.json``."""

    def __init__(self, root: Path = DEFAULT_STORE) -> None:
        self.root = root

    @property
    def index_file(self) -> Path:
        return self.root / "index.json"

    def index(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.index_file.read_text())
        except FileNotFoundError:
            return {}
        return data

    def lookup(self, ref: str) -> StoredImage | None:
        """The image pods name ``ref``, if it is built; a bare name means ``:latest``, as a
        container runtime reads it."""
        index = self.index()
        entry = index.get(ref) or index.get(normalise_ref(ref))
        if entry is None or not (Path(entry["dir"]) / "rootfs").is_dir():
            return None
        return StoredImage(
            ref=ref, name=entry["name"], key=entry["key"], digest=entry["digest"], dir=Path(entry["dir"])
        )

    def refs(self) -> list[str]:
        return sorted(self.index())

    def built(self, spec: ImageSpec, key: str) -> StoredImage | None:
        image = self.lookup(spec.ref)
        return image if image is not None and image.key == key else None

    def record(self, spec: ImageSpec, key: str, digest: str, directory: Path) -> None:
        index = self.index()
        index[normalise_ref(spec.ref)] = {
            "name": spec.name,
            "key": key,
            "digest": digest,
            "dir": str(directory),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        tmp.replace(self.index_file)


def normalise_ref(ref: str) -> str:
    """``name`` → ``name:latest`` (a digest or a tag stays as it is)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ("@" in ref or ":" in last) else f"{ref}:latest"


# --------------------------------------------------------------------------------------
# Building


class BuildError(Exception):
    """A step failed; the message names it and its log."""


class Progress:
    """``[step/total elapsed] what`` lines, as hack/build-control-plane.sh prints them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.start = time.monotonic()

    def begin(self, what: str) -> None:
        self.step += 1
        self.say(what)

    def say(self, what: str) -> None:
        print(f"[{self.step:2d}/{self.total} {time.monotonic() - self.start:4.0f}s] {what}", flush=True)


class Builder:
    """Builds :class:`ImageSpec` s into a :class:`Store` with buildah (storage in the store)."""

    def __init__(self, store: Store, *, log: Path | None = None) -> None:
        self.store = store
        self.log = log or store.root / "build.log"
        self.storage = [
            "--root",
            str(store.root / "storage"),
            "--runroot",
            str(store.root / "run"),
            "--storage-driver",
            "overlay",
        ]

    # -- commands

    def run(self, argv: Sequence[str], what: str, **kwargs: Any) -> str:
        """Run ``argv`` with its output appended to the build log; its stdout."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {what}: {' '.join(argv)}\n")
            log.flush()
            result = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=log, text=True, check=False, **kwargs
            )
            log.write(result.stdout[-20000:])
        if result.returncode != 0:
            raise BuildError(f"{what} failed (exit {result.returncode}); see {self.log}")
        out: str = result.stdout
        return out

    def buildah(self, *args: str, what: str) -> str:
        return self.run(
            ["buildah", *self.storage, *args], what, env={**os.environ, "BUILDAH_ISOLATION": "chroot"}
        )

    def has_image(self, ref: str) -> bool:
        return (
            subprocess.run(
                ["buildah", *self.storage, "inspect", "--type", "image", ref],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    # -- the Debian bases

    def base_refs(self) -> tuple[str, str]:
        key = base_key()
        return f"localhost/jobqueue-base:{key}", f"localhost/jobqueue-build-base:{key}"

    def ensure_base(self, progress: Progress, *, refresh: bool) -> tuple[str, str]:
        """The runtime and build bases in buildah's storage (mmdebstrap when not cached)."""
        runtime_ref, build_ref = self.base_refs()
        directory = self.store.root / "base" / base_key()
        progress.begin(
            f"Debian base root filesystems ({DEBIAN_SUITE}: {', '.join(RUNTIME_PACKAGES)}; "
            f"build stage + {', '.join(BUILD_PACKAGES)})"
        )
        if refresh or not (directory / "done").exists():
            progress.say("  mmdebstrap (~1 min, downloads ~40 MB of packages)")
            self._mmdebstrap(directory)
        else:
            progress.say(f"  cached in {directory}")
        if refresh or not (self.has_image(runtime_ref) and self.has_image(build_ref)):
            for ref, tar in ((runtime_ref, "runtime.tar"), (build_ref, "build.tar")):
                self._import(directory / tar, ref)
            progress.say(f"  imported as {runtime_ref} and {build_ref}")
        return runtime_ref, build_ref

    def _mmdebstrap(self, directory: Path) -> None:
        tree = self._debian_tree(directory, RUNTIME_PACKAGES + BUILD_PACKAGES)
        self._tar(tree, directory / "build.tar", "tar of the build base")
        self.run(["chroot", str(tree), "dpkg", "--purge", *BUILD_ONLY_PURGE], "purging the build tools")
        self._finish_tree(tree, directory / "runtime.tar")

    def _debian_tree(self, directory: Path, packages: Sequence[str]) -> Path:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        tree = directory / "tree"
        self.run(
            [
                "mmdebstrap",
                *MMDEBSTRAP_OPTIONS,
                f"--include={','.join(packages)}",
                DEBIAN_SUITE,
                str(tree),
                *debian_sources(DEBIAN_SUITE),
            ],
            "mmdebstrap",
        )
        return tree

    def _tar(self, tree: Path, tar: Path, what: str) -> None:
        self.run(["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "-cf", str(tar), "."], what)

    def _finish_tree(self, tree: Path, tar: Path) -> None:
        """The last root filesystem of ``tree`` as ``tar``, its package list beside it; ``tree`` goes."""
        self._tar(tree, tar, f"tar of {tar.name}")
        packages = self.run(
            ["chroot", str(tree), "dpkg-query", "-W", "-f", "${Package}\t${Version}\n"], "package list"
        )
        (tar.parent / "packages.txt").write_text(packages)
        shutil.rmtree(tree)
        (tar.parent / "done").touch()

    def ensure_packages_base(self, packages: Sequence[str], progress: Progress) -> str:
        """A Debian root filesystem of ``packages`` in buildah's storage (mmdebstrap when not cached)."""
        key = packages_key(packages)
        ref = f"localhost/jobqueue-debian:{key}"
        directory = self.store.root / "base" / f"packages-{key}"
        progress.begin(f"Debian root filesystem with {', '.join(packages)} ({DEBIAN_SUITE})")
        if not (directory / "done").exists():
            progress.say("  mmdebstrap")
            self._finish_tree(self._debian_tree(directory, packages), directory / "rootfs.tar")
        if not self.has_image(ref):
            self._import(directory / "rootfs.tar", ref, cmd="sh")
        return ref

    def _import(self, tar: Path, ref: str, cmd: str = "python3") -> None:
        ctr = self.buildah("from", "scratch", what="buildah from scratch").strip()
        try:
            self.buildah("add", ctr, str(tar), "/", what=f"adding {tar.name}")
            created_by = f"mmdebstrap {DEBIAN_SUITE} (hack/images.py)"
            self.buildah(
                "config",
                "--env",
                f"PATH={DEFAULT_PATH}",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                cmd,
                "--created-by",
                created_by,
                ctr,
                what="buildah config",
            )
            self.buildah("commit", "--quiet", "--rm", ctr, ref, what=f"committing {ref}")
        except BuildError:
            self.buildah("rm", ctr, what="buildah rm")
            raise

    # -- images

    def build(
        self, names: Sequence[str], *, specs: Mapping[str, ImageSpec] = IMAGES, refresh_base: bool = False
    ) -> list[StoredImage]:
        """Build ``names`` (and the images they build FROM), each unless already built."""
        order = _with_parents(names, specs)
        progress = Progress(
            len(order)
            + (1 if any(specs[n].debian_base for n in order) else 0)
            + sum(1 for n in order if specs[n].debian_packages)
        )
        keys: dict[str, str] = {}
        bases: tuple[str, str] | None = None
        built: list[StoredImage] = []
        for name in order:
            spec = specs[name]
            key = keys[name] = image_key(spec, keys[spec.parent] if spec.parent else None)
            if spec.debian_base and bases is None:
                stored = self.store.built(spec, key)
                if stored is None or refresh_base:
                    bases = self.ensure_base(progress, refresh=refresh_base)
                else:
                    progress.begin("Debian base root filesystems: not needed (images cached)")
            progress.begin(f"{spec.ref} ({spec.dockerfile.relative_to(ROOT)}, key {key})")
            stored = self.store.built(spec, key)
            if stored is not None and not (refresh_base and spec.debian_base):
                progress.say(f"  cached in {stored.dir}")
                built.append(stored)
                continue
            if spec.parent and not self.has_image(specs[spec.parent].ref):
                parent = self.store.lookup(specs[spec.parent].ref)
                assert parent is not None  # built just before
                image_id = self.buildah(
                    "pull", "--quiet", f"oci-archive:{parent.archive}", what=f"loading {parent.ref}"
                ).strip()
                self.buildah("tag", image_id, parent.ref, what=f"tagging {parent.ref}")
            args = dict(spec.build_args)
            if spec.debian_packages:
                args["BASE_IMAGE"] = self.ensure_packages_base(spec.debian_packages, progress)
            if spec.debian_base:
                assert bases is not None
                args.update(BASE_IMAGE=bases[0], BUILD_IMAGE=bases[1])
            t0 = time.monotonic()
            stored = self._bud(spec, key, args)
            progress.say(
                f"  built in {time.monotonic() - t0:.0f}s: {stored.digest[:19]}, "
                f"archive {stored.archive.stat().st_size / 2**20:.0f} MiB, "
                f"root filesystem {_du(stored.rootfs) / 2**20:.0f} MiB"
            )
            built.append(stored)
        return built

    def _bud(self, spec: ImageSpec, key: str, args: Mapping[str, str]) -> StoredImage:
        directory = self.store.root / spec.name / key
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        argv = [
            "bud",
            "--layers",
            "--pull=never",
            "--format",
            "oci",
            "-f",
            str(spec.dockerfile),
            "-t",
            spec.ref,
        ]
        for k, v in sorted(args.items()):
            argv += ["--build-arg", f"{k}={v}"]
        argv += [f"--volume={src}:{dst}:ro" for src, dst in self._host_trust()]
        self.buildah(*argv, str(spec.context), what=f"buildah bud {spec.name}")
        with tempfile.TemporaryDirectory(dir=self.store.root) as tmp:
            layout = Path(tmp) / "layout"
            self.buildah(
                "push", "--quiet", spec.ref, f"oci:{layout}:{spec.ref}", what=f"exporting {spec.ref}"
            )
            self.run(
                ["umoci", "unpack", "--image", f"{layout}:{spec.ref}", str(directory / "bundle")],
                f"unpacking {spec.ref}",
            )
            (directory / "bundle" / "rootfs").rename(directory / "rootfs")
            digest, config = _layout_config(layout, spec.ref)
            (directory / "image-config.json").write_text(json.dumps(config, indent=1))
            self.run(
                ["tar", "-C", str(layout), "-cf", str(directory / "image.oci.tar"), "."],
                f"archiving {spec.ref}",
            )
        shutil.rmtree(directory / "bundle")
        self.store.record(spec, key, digest, directory)
        for old in (self.store.root / spec.name).iterdir():  # one build per image is kept
            if old != directory:
                shutil.rmtree(old, ignore_errors=True)
        stored = self.store.lookup(spec.ref)
        assert stored is not None
        return stored

    def _host_trust(self) -> list[tuple[Path, str]]:
        """Mounted into the build's RUN steps only (never into the image): this machine's CA
        bundle and a pip configuration naming it, so pip trusts what the host trusts (a
        TLS-intercepting proxy, a private index); the host's PIP_INDEX_URL is kept."""
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if not bundle.is_file():
            return []
        conf = self.store.root / "pip.conf"
        lines = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt"]
        lines += [f"index-url = {os.environ['PIP_INDEX_URL']}"] if os.environ.get("PIP_INDEX_URL") else []
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("\n".join(lines) + "\n")
        return [(bundle, "/etc/ssl/certs/ca-certificates.crt"), (conf, "/etc/pip.conf")]


def _with_parents(names: Sequence[str], specs: Mapping[str, ImageSpec]) -> list[str]:
    """``names`` with the images they build FROM, parents first."""
    order: list[str] = []

    def add(name: str) -> None:
        if name not in specs:
            raise BuildError(f"unknown image {name!r}: known are {', '.join(sorted(specs))}")
        parent = specs[name].parent
        if parent:
            add(parent)
        if name not in order:
            order.append(name)

    for name in names:
        add(name)
    return order


def _layout_config(layout: Path, ref: str) -> tuple[str, dict[str, Any]]:
    """The manifest digest and the image configuration of ``ref`` in an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    manifest_desc = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref
    )
    digest = manifest_desc["digest"]
    manifest = json.loads(_blob(layout, digest))
    return digest, json.loads(_blob(layout, manifest["config"]["digest"]))


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":", 1)
    return (layout / "blobs" / algorithm / hexdigest).read_bytes()


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def debian_sources(suite: str, apt: Path = Path("/etc/apt")) -> list[str]:
    """This machine's apt entries for ``suite`` and its ``-updates``/``-security`` suites, as
    one-line ``deb`` entries for mmdebstrap (the mirror the machine is configured to use);
    none found: mmdebstrap's default mirror for the suite."""
    entries: list[str] = []
    for f in sorted([apt / "sources.list", *apt.glob("sources.list.d/*.list")]):
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 4 and words[0] == "deb" and not words[1].startswith("["):
                    uri, dist, comps = words[1], words[2], words[3:]
                    if _suite_of(dist, suite) and "main" in comps:
                        entries.append(f"deb {uri} {dist} main")
    for f in sorted(apt.glob("sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            for stanza in _deb822(f.read_text()):
                if "deb" not in stanza.get("Types", "").split() or "main" not in stanza.get("Components", ""):
                    continue
                for uri in stanza.get("URIs", "").split():
                    entries += [
                        f"deb {uri} {dist} main"
                        for dist in stanza.get("Suites", "").split()
                        if _suite_of(dist, suite)
                    ]
    return list(dict.fromkeys(entries))


def _suite_of(dist: str, suite: str) -> bool:
    return dist == suite or dist.startswith(f"{suite}-")


def _deb822(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        stanza: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                stanza[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                stanza[key.strip()] = value.strip()
        if stanza:
            yield stanza


# --------------------------------------------------------------------------------------
# Command line


def build_problem() -> str | None:
    """Why images cannot be built, or run by the pod runner, on this machine (None: they can)."""
    missing = [tool for tool in ("buildah", "mmdebstrap", "umoci", "runc") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed: run hack/system-deps.sh"
    if os.geteuid() != 0:
        return "building and running them needs root (mmdebstrap's chroot, buildah's storage, runc)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hack/images.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the images (each only when its inputs changed)")
    b.add_argument("names", nargs="*", help=f"default: {' '.join(IMAGES)}")
    b.add_argument(
        "--refresh-base",
        action="store_true",
        help="rebuild the Debian base (new package versions) and the images on it",
    )
    b.add_argument(
        "--for-pods",
        action="store_true",
        help="only where the pod runner can run them (root, runc): elsewhere say so and exit 0",
    )
    sub.add_parser("list", help="the images the pod runner can run")
    a = p.parse_args(argv)
    store = Store()
    if a.command == "list":
        for ref in store.refs():
            image = store.lookup(ref)
            print(f"{ref}\t{image.digest if image else '(missing)'}\t{image.dir if image else ''}")
        return 0
    problem = build_problem()
    if problem and a.for_pods:
        print(
            f"image: not building the images ({problem}): the pod runner will run pods as host processes",
            file=sys.stderr,
        )
        return 0
    if problem:
        print(f"image: {problem}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        Builder(store).build(a.names or list(IMAGES), refresh_base=a.refresh_base)
    except BuildError as e:
        print(f"image: {e}", file=sys.stderr)
        return 1
    print(f"images ready in {time.monotonic() - t0:.1f}s; `python hack/images.py list` shows them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
