"""The OpenAPI document is complete and says what the API checks.

schemathesis, in-process and bounded: the JSON bodies of POST /sweeps and /sweeps/preview are
generated from SweepSubmission and never give a 5xx; the
documented example is accepted; and the GETs' schema-valid parameters are never refused.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from .conftest import API_TOKEN
from .openapi_support import BOUNDED as BOUNDED_BASE
from .openapi_support import OPENAPI, schema

BOUNDED = settings(BOUNDED_BASE, max_examples=30)
BODIES = schema.include(method="POST", path_regex=r"^/sweeps(/preview)?$")
GETS = schema.include(
    method="GET",
    path_regex=r"^/(sweeps|sweeps/\{sweep_id\}|sweeps/\{sweep_id\}/table|compare"
    r"|runs/\{run_id\}|runs/\{run_id\}/metrics)$",
)


def _send(case: Any, app: Any) -> Any:
    case.headers = {
        **{k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"},
        "Authorization": f"Bearer {API_TOKEN}",
    }
    return case.call_and_validate(app=app, checks=[not_a_server_error, status_code_conformance])


def test_every_reference_is_defined() -> None:
    text = repr(OPENAPI)
    defined = set(OPENAPI["components"]["schemas"])
    referenced = {
        ref.split("/")[-1] for ref in _refs(OPENAPI) if ref.startswith("#/components/schemas/")
    }
    assert "SweepSubmission" in referenced and referenced <= defined, referenced - defined
    assert "SweepSubmission" in text


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_the_documented_example_is_accepted(app_with_data: Any) -> None:
    (example,) = OPENAPI["components"]["schemas"]["SweepSubmission"]["examples"]
    with TestClient(app_with_data, headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        preview = client.post("/sweeps/preview", json=example)
        assert preview.status_code == 200, preview.text
        assert preview.json()["would_train"] == 2
        created = client.post("/sweeps", json=example)
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "example"


@BODIES.parametrize()
@BOUNDED
def test_submission_bodies_never_fail_the_server(case: Any, app_with_data: Any) -> None:
    response = _send(case, app_with_data)
    assert response.status_code < 500
    if _positive(case) and case.media_type == "application/json":
        # Generated from SweepSubmission: a map with a `yaml` string.
        assert isinstance(case.body, dict) and isinstance(case.body.get("yaml"), str)
        assert response.status_code != 400, response.text[:300]


def _positive(case: Any) -> bool:
    """A case schemathesis generated as schema-valid (not a negative or a wrong method)."""
    mode = getattr(getattr(case.meta, "generation", None), "mode", None)
    right_method = case.method.upper() == case.operation.method.upper()
    return bool(mode is not None and mode.is_positive and right_method)


def _depends_on_stored_data(case: Any) -> str | None:
    """Why a schema-valid request may still be refused, or None when it must be accepted."""
    query = case.query or {}
    named = {"sort", "include", "exclude", "average", "average_std"} & set(query)
    if named:
        return f"{sorted(named)} name columns or matrix keys of the stored runs"
    if "keys" in query:
        return "metric keys are whatever the run recorded"
    if case.path == "/compare" and not (query.get("runs") or query.get("sweeps")):
        return "OpenAPI cannot say 'runs or sweeps, at least one'; the 422 is documented"
    return None


@GETS.parametrize()
@BOUNDED
def test_schema_valid_parameters_are_accepted(case: Any, app_with_data: Any) -> None:
    response = _send(case, app_with_data)
    assert response.status_code < 500
    if not _positive(case) or _depends_on_stored_data(case):
        return
    # 404 is an id that does not exist: well formed, answered. 400 and 422 are refusals.
    assert response.status_code in (200, 404), (case.path, case.query, response.text[:300])
