"""The images the integration tests run, beyond the ones ``make image`` builds.

``SCALE_TESTS`` is the autoscaler's, end-to-end and chaos tests' worker image: the project's
image plus :mod:`integration.scaling.scalejobs`, built ``FROM`` it as docs/jobs.md tells users
to build theirs. The session fixture ``built_images`` builds it with the others.
"""

from __future__ import annotations

from pathlib import Path

import images

ROOT = Path(__file__).resolve().parent.parent

SCALE_TESTS = images.ImageSpec(
    name="scale-tests",
    ref="registry.invalid/scale-tests:1",
    parent="operator",
    dockerfile=ROOT / "tests/integration/scaling/Dockerfile",
    context=ROOT / "tests",
    inputs=(ROOT / "tests/.dockerignore", ROOT / "tests/integration/scaling/scalejobs.py"),
)

ALL: dict[str, images.ImageSpec] = {**images.IMAGES, SCALE_TESTS.name: SCALE_TESTS}
