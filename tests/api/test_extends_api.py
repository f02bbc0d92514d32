"""`$extends` through the API (JSON map of files) and the UI's submit form (base uploads)."""

# ruff: noqa: F811

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import Sweep
from tests.api.conftest import TINY_YAML, post_yaml
from tests.api.ui_support import logged_in, ui_client  # noqa: F401 - fixtures

CHILD = "$extends: ../bases/tiny.yml\nbatch_size: 2\nexperiment_name: child/lin_${matrix_slug}\n"
SAME_ORIGIN = {"Origin": "http://testserver"}


def test_preview_and_submit_merge_the_bases_sent_with_the_file(
    client: TestClient, session: Session
) -> None:
    body = {"yaml": CHILD, "filename": "exp/child.yml", "files": {"bases/tiny.yml": TINY_YAML}}
    preview = client.post("/sweeps/preview", json=body)
    assert preview.status_code == 200, preview.text
    merged = preview.json()["merged_yaml"]
    assert merged.startswith("# $extends merged: exp/child.yml <- bases/tiny.yml\n")
    assert "batch_size: 2\n" in merged and "batch_size: 4" not in merged
    assert [r["experiment_name"] for r in preview.json()["runs"]] == [
        "child/lin_lr:0.1", "child/lin_lr:0.01",
    ]  # fmt: skip
    created = client.post("/sweeps", json=body)
    assert created.status_code == 201
    sweep = session.get_one(Sweep, created.json()["id"])
    assert sweep.yaml_text == merged  # what ran is stored whole, without its bases
    # The OpenAPI schema documents the new fields.
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"yaml", "filename", "files"} <= set(schemas["SweepSubmission"]["properties"])
    assert "merged_yaml" in schemas["SweepPreview"]["properties"]


def test_missing_base_is_a_422_naming_the_file_and_line(client: TestClient) -> None:
    response = client.post("/sweeps", json={"yaml": CHILD, "filename": "exp/child.yml"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["file"] == "exp/child.yml" and detail["line"] == 1
    assert "'bases/tiny.yml' was not found" in detail["message"]
    # As plain YAML there is nowhere to take the base from: the error says what to do.
    plain = post_yaml(client, CHILD)
    assert plain.status_code == 422 and "base" in plain.json()["detail"]["message"]
    assert client.get("/sweeps").json()["total"] == 0  # nothing stored half-way


def test_submit_form_takes_the_bases_as_uploads(logged_in: TestClient) -> None:
    response = logged_in.post(
        "/ui/submit",
        data={"action": "preview"},
        files=[
            ("file", ("child.yml", CHILD.replace("../bases/", "").encode(), "text/yaml")),
            ("bases", ("tiny.yml", TINY_YAML.encode(), "text/yaml")),
        ],
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 200, response.text
    assert 'id="merged-yaml"' in response.text and "child/lin_lr:0.01" in response.text
