"""``make image`` rebuilds an image exactly when something that goes into it changed
(hack/images.py): keys, the store's references, the order of builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import images


def spec(tmp_path: Path, **kw: object) -> images.ImageSpec:
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY app.py /app/\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    fields: dict[str, object] = {
        "name": "app",
        "ref": "registry.example/app:1",
        "dockerfile": tmp_path / "Dockerfile",
        "context": tmp_path,
        "inputs": (tmp_path / "app.py",),
        **kw,
    }
    return images.ImageSpec(**fields)  # type: ignore[arg-type]


def test_the_key_follows_every_input(tmp_path: Path) -> None:
    s = spec(tmp_path)
    key = images.image_key(s, None)
    assert images.image_key(s, None) == key  # stable
    (tmp_path / "app.py").write_text("print(2)\n")
    changed_file = images.image_key(s, None)
    assert changed_file != key
    assert images.image_key(s, "parent-key") != changed_file  # a rebuilt parent rebuilds the child
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY app.py /srv/\n")
    assert images.image_key(s, None) != changed_file
    with_arg = images.image_key(spec(tmp_path, build_args={"X": "1"}), None)
    assert with_arg != images.image_key(spec(tmp_path), None)


def test_caches_and_build_debris_are_not_inputs(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text("x = 1\n")
    before = images.tree_digest([pkg], tmp_path)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "pkg.egg-info").mkdir()
    (pkg / "pkg.egg-info" / "PKG-INFO").write_text("x")
    assert images.tree_digest([pkg], tmp_path) == before
    (pkg / "new.py").write_text("")
    assert images.tree_digest([pkg], tmp_path) != before


def test_the_store_resolves_references_as_a_runtime_does(tmp_path: Path) -> None:
    store = images.Store(tmp_path)
    directory = tmp_path / "app" / "k1"
    (directory / "rootfs").mkdir(parents=True)
    (directory / "image-config.json").write_text(json.dumps({"config": {"User": "65532"}}))
    store.record(spec(tmp_path, ref="example/app"), "k1", "sha256:abc", directory)
    assert store.refs() == ["example/app:latest"]
    found = store.lookup("example/app")
    assert found is not None
    assert (found.key, found.digest, found.config()) == ("k1", "sha256:abc", {"User": "65532"})
    assert store.lookup("example/app:latest") is not None
    assert store.lookup("example/app:2") is None
    assert images.normalise_ref("r.io:5000/a/b") == "r.io:5000/a/b:latest"
    assert images.normalise_ref("a@sha256:00") == "a@sha256:00"


def test_parents_are_built_first_and_unknown_names_say_what_is_known() -> None:
    assert images._with_parents(["glec-jobs"], images.IMAGES) == ["operator", "glec-jobs"]
    with pytest.raises(images.BuildError, match="unknown image 'nope': known are glec-jobs, operator"):
        images._with_parents(["nope"], images.IMAGES)


def test_the_operator_image_is_what_the_chart_installs_by_default() -> None:
    chart = (images.ROOT / "helm/jobqueue-operator/Chart.yaml").read_text()
    assert f'appVersion: "{images.OPERATOR.ref.rsplit(":", 1)[1]}"' in chart
    samples = (images.ROOT / "manifests/samples/jobqueues.yaml").read_text()
    assert f"image: {images.GLEC_JOBS.ref}" in samples


def test_mmdebstrap_gets_the_machines_mirrors_for_the_suite(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "deb http://old.example/debian bookworm main contrib\n"
        "deb http://cloud.example cloud-sdk-bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n# security\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main contrib\n\nTypes: deb\nURIs: http://node.example\n"
        "Suites: nodistro\nComponents: main\n"
    )
    assert images.debian_sources("bookworm", tmp_path) == [
        "deb http://old.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]
    assert images.debian_sources("bookworm", tmp_path / "none") == []  # mmdebstrap's default then


def test_a_debian_package_image_is_keyed_by_its_package_list(tmp_path: Path) -> None:
    plain = images.image_key(spec(tmp_path), None)
    redis = images.image_key(spec(tmp_path, debian_packages=("redis-server",)), None)
    assert redis != plain
    assert images.image_key(spec(tmp_path, debian_packages=("redis-server", "redis-tools")), None) != redis
    # the order packages are named in does not matter: the same root filesystem
    assert images.packages_key(("a", "b")) == images.packages_key(("b", "a"))
    assert images.REDIS.debian_packages == ("redis-server",)
    assert images.REDIS.name in images.IMAGES
