"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema (schemathesis).

With a token: no 5xx, every response documented and matching its schema. Without one: every
endpoint but /healthz answers 401, never 5xx. Bounded: a few dozen cases per operation.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from jsonschema_rs import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import API_TOKEN
from .openapi_support import BOUNDED, OPENAPI, schema

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# schemathesis (4.32) turns pydantic's `prefixItems` (the [inputs, value] pairs of a metric
# series, valid OpenAPI 3.1) into draft-4 `items: [...]` and then calls the schema invalid; that
# response is checked against the app's own schema with a 2020-12 validator (jsonschema_rs).
PAIRS_PATH = "/runs/{run_id}/metrics"


def _validate_pairs(response: Any) -> None:
    schema = {"$ref": "#/components/schemas/MetricSeries", "components": OPENAPI["components"]}
    Draft202012Validator(schema).validate(response.json())


def _send(case: Any, app: Any, authorization: str | None) -> Any:
    # Replace whatever Authorization schemathesis generated for the bearer scheme.
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if authorization is not None:
        headers["Authorization"] = authorization
    case.headers = headers
    checks = CHECKS
    if case.path == PAIRS_PATH:
        checks = [c for c in CHECKS if c is not response_schema_conformance]
    response = case.call_and_validate(app=app, checks=checks)
    if case.path == PAIRS_PATH and response.status_code == 200:
        _validate_pairs(response)
    return response


def _expected_status(case: Any, documented: int) -> tuple[int, ...]:
    # schemathesis also sends methods the path does not have (TRACE, ...): those are 405s
    # (or a 401 first, where the path matches another route: GET /sweeps/preview is
    # /sweeps/{sweep_id}, and the token is checked before the id)
    if case.method.upper() != case.operation.method.upper():
        return (405,) if documented == 200 else (401, 405)
    return (documented,)


@schema.parametrize()
@BOUNDED
def test_fuzz_with_token(case: Any, app_with_data: Any) -> None:
    response = _send(case, app_with_data, f"Bearer {API_TOKEN}")
    assert response.status_code < 500
    assert response.status_code != 401, (case.method, case.path)
    if case.path == PAIRS_PATH and response.status_code == 200:
        assert isinstance(response.json()["series"], dict)


# Refusals are uniform: fewer cases find what there is to find.
REFUSED = settings(BOUNDED, max_examples=12)


@schema.parametrize()
@REFUSED
def test_fuzz_without_token(case: Any, app_with_data: Any) -> None:
    response = _send(case, app_with_data, None)
    expected = _expected_status(case, 200 if case.path == "/healthz" else 401)
    assert response.status_code in expected, (case.method, case.path, response.text[:200])


@schema.parametrize()
@REFUSED
def test_fuzz_with_a_wrong_token(case: Any, app_with_data: Any) -> None:
    response = _send(case, app_with_data, "Bearer swp_wrong")
    expected = _expected_status(case, 200 if case.path == "/healthz" else 401)
    assert response.status_code in expected, (case.method, case.path, response.text[:200])
