"""The CRDs: generated from the models, checked in, structural, and what kubectl shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from jobqueue_operator import crdgen, models


def test_checked_in_crds_match_the_models() -> None:
    stale = crdgen.stale()
    assert not stale, f"generated files are out of date: {[str(p) for p in stale]}; run `make generate`"


def test_every_generated_file_says_it_is_generated() -> None:
    for path, text in crdgen.outputs().items():
        if path.name == crdgen.DOCS.name:  # prose with generated sections: each one says so
            assert text.count("do not edit -->") == 2
        else:
            assert text.startswith(crdgen.HEADER), path


def test_the_docs_reference_lists_every_spec_field() -> None:
    table = crdgen.reference_table(crdgen.jobqueue_crd(), "spec")
    for field in (
        "spec.queueName",
        "spec.worker.image` (required)",
        "spec.scaling.maxReplicas",
        "spec.jobDefaults.backoff.type",
        "spec.redis.urlSecretRef.key` (required)",
        "spec.suspend",
    ):
        assert f"`{field}" in table, field
    assert "`exponential` \\| `fixed`" in table


def test_the_chart_copy_is_the_crd_behind_crds_install() -> None:
    files = crdgen.outputs()
    for path, text in files.items():
        if crdgen.HELM_CRD_DIR.as_posix() not in path.as_posix():
            continue
        body = text.removeprefix(crdgen.HEADER)
        assert body.startswith("{{- if .Values.crds.install }}\n")
        assert body.endswith("{{- end }}\n")
        inner = body.split("\n", 1)[1].rsplit("{{- end }}", 1)[0]
        keep = (
            "  {{- if .Values.crds.keep }}\n  annotations:\n    helm.sh/resource-policy: keep\n  {{- end }}\n"
        )
        assert inner.count(keep) == 1  # the keep annotation behind crds.keep
        chart = yaml.safe_load(inner.replace(keep, ""))
        plain = yaml.safe_load(files[path.parents[3].parent / "crds" / path.name].removeprefix(crdgen.HEADER))
        assert chart == plain


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize(
    "crd", [crdgen.jobqueue_crd(), crdgen.recurringjob_crd()], ids=lambda c: c["spec"]["names"]["kind"]
)
def test_schemas_are_structural(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _nodes(schema):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "not", "$defs", "title"} & node.keys(), path
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), path
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message") or rule.get("messageExpression"), f"{path}: a rule without message"


def test_jobqueue_crd_names_columns_and_subresources() -> None:
    crd = crdgen.jobqueue_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "JobQueue",
        "jobqueues",
        ["jq"],
        ["jobqueue-operator"],
    )
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    default_columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert default_columns == ["Priority", "Concurrency", "Workers", "Queued", "Running", "Failed", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    # the autoscaler's fields are declared too (undeclared status fields would be pruned)
    for field in (
        "queued",
        "scheduled",
        "running",
        "failed",
        "oldestQueuedSeconds",
        "desiredReplicas",
        "lastScaleTime",
        "lastScaleReason",
        "workers",
        "observedGeneration",
        "conditions",
    ):
        assert field in status, field
    assert status["conditions"]["x-kubernetes-list-type"] == "map"


def test_recurringjob_crd_names() -> None:
    names = crdgen.recurringjob_crd()["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "RecurringJob",
        ["rj"],
        ["jobqueue-operator"],
    )


def test_job_defaults_schema_is_the_data_planes_job_options() -> None:
    spec = crdgen.jobqueue_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaults = spec["properties"]["jobDefaults"]
    assert set(defaults["properties"]) == {
        "attempts",
        "backoff",
        "timeoutSeconds",
        "keepCompleted",
        "keepFailed",
    }
    backoff = defaults["properties"]["backoff"]
    assert backoff["properties"]["type"]["enum"] == ["exponential", "fixed"]
    assert any("maxDelaySeconds" in r["rule"] for r in backoff["x-kubernetes-validations"])


def test_schema_defaults_are_the_models_defaults() -> None:
    spec = crdgen.jobqueue_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    parsed = models.JobQueueSpec.model_validate({"worker": {"image": "i", "imports": ["m"]}})
    assert spec["properties"]["priority"]["default"] == parsed.priority
    assert spec["properties"]["concurrency"]["default"] == parsed.concurrency
    scaling = spec["properties"]["scaling"]
    assert scaling["default"] == {}
    assert scaling["properties"]["minReplicas"]["default"] == parsed.scaling.min_replicas
    assert (
        scaling["properties"]["idleSecondsBeforeZero"]["default"] == parsed.scaling.idle_seconds_before_zero
    )


def test_unsupported_constructs_are_refused() -> None:
    from pydantic import BaseModel

    class Odd(BaseModel):
        value: int | list[str]

    with pytest.raises(crdgen.SchemaError, match="anyOf"):
        crdgen.structural(Odd)


def test_check_mode_reports_drift(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert "run `make generate`" in capsys.readouterr().err
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 0


#: Descriptions that may appear on several fields: each names the same thing wherever it is
#: (a reviewed list; a description copied onto a field that means something else — the old
#: keepFailed.ageSeconds, which said "a finished job" — must not pass unnoticed).
SHARED_DESCRIPTIONS = {"name of the object", "do not fail when the object is missing"}


@pytest.mark.parametrize(
    "crd", [crdgen.jobqueue_crd(), crdgen.recurringjob_crd()], ids=lambda c: c["spec"]["names"]["kind"]
)
def test_no_field_description_is_a_copy_of_anothers(crd: dict[str, Any]) -> None:
    paths: dict[str, list[str]] = {}
    for path, node in _nodes(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
        if path and node.get("description"):
            paths.setdefault(node["description"], []).append(path)
    copies = {
        text: where for text, where in paths.items() if len(where) > 1 and text not in SHARED_DESCRIPTIONS
    }
    assert not copies, f"the same description on different fields (say what each one means): {copies}"
