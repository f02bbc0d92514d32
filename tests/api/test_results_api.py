"""GET /runs/{id}/checkpoint's refusals and GET /sweeps/{id}/report's zip, in process."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import RunStatus

from .conftest import TINY_YAML, finish_run, post_yaml

GRID_YAML = TINY_YAML.replace("lr: [0.1, 0.01]", "lr: [0.1, 0.01]\n  trial: [1, 2, 3]")


def test_checkpoint_refusals_say_why(
    client: TestClient, anon: TestClient, session: Session
) -> None:
    ids = [r["id"] for r in post_yaml(client).json()["runs"]]
    queued = client.get(f"/runs/{ids[0]}/checkpoint")
    assert queued.status_code == 404
    assert queued.json()["detail"].startswith(f"run {ids[0]} has no trained model: it is queued")
    finish_run(session, ids[1], status=RunStatus.FAILED)
    failed = client.get(f"/runs/{ids[1]}/checkpoint")
    assert "it is failed" in failed.json()["detail"]
    finish_run(session, ids[0])  # succeeded, but nothing in the artifact store
    missing = client.get(f"/runs/{ids[0]}/checkpoint")
    assert missing.status_code == 404 and "left no model file" in missing.json()["detail"]
    assert client.get("/runs/999999/checkpoint").json()["detail"] == "run 999999 does not exist"
    assert anon.get(f"/runs/{ids[0]}/checkpoint").status_code == 401


def test_checkpoint_streams_the_stored_file(
    client: TestClient, session: Session, api_env: dict[str, str], tmp_path: Path
) -> None:
    from shared.artifacts import MODEL_FILE, run_location
    from shared.settings import get_settings

    run_id = post_yaml(client).json()["runs"][0]["id"]
    finish_run(session, run_id)
    folder = Path(run_location(get_settings().artifact_location, run_id))
    folder.mkdir(parents=True)
    payload = bytes(range(256)) * 5000  # over one streamed chunk
    (folder / MODEL_FILE).write_bytes(payload)
    response = client.get(f"/runs/{run_id}/checkpoint")
    assert response.status_code == 200 and response.content == payload
    assert f'filename="run-{run_id}.pt"' in response.headers["content-disposition"]

    # The same file again: its run is reused, and hands back the model of the run it reuses.
    reused = post_yaml(client).json()["runs"][0]
    assert reused["status"] == "reused"
    again = client.get(f"/runs/{reused['id']}/checkpoint")
    assert again.content == payload and again.headers["x-sweeps-source-run"] == str(run_id)


def _png_lines(content: bytes) -> list[str]:
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG"
        return list(json.loads(image.text["Lines"]))


def test_report_zip_averaged(client: TestClient, session: Session) -> None:
    created = post_yaml(client, GRID_YAML).json()
    for n, run in enumerate(created["runs"]):
        series = [(32, 1.0 - n / 10), (64, 0.5 - n / 20)]
        finish_run(
            session, run["id"],
            status=RunStatus.RUNNING if n == 5 else RunStatus.SUCCEEDED,
            latest={"validation_loss": series[-1]}, series={"validation_loss": series},
        )  # fmt: skip
    params = {"average": "trial", "average_std": "validation loss"}
    response = client.get(f"/sweeps/{created['id']}/report", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert set(archive.namelist()) == {
        "report.md", "table.csv", "sweep.yaml", "plots/validation_loss.png",
    }  # fmt: skip
    lines = _png_lines(archive.read("plots/validation_loss.png"))
    assert lines == ["lr:0.1 (n=3)", "lr:0.01 (n=2)"]
    text = archive.read("report.md").decode()
    assert "1 running (run" in text and "Averaged over `trial`" in text
    assert archive.read("sweep.yaml").decode() == GRID_YAML


@pytest.mark.parametrize(
    ("params", "status"), [({"average": "nope"}, 422), ({"sort": "nope"}, 422)]
)
def test_report_refuses_bad_options(client: TestClient, params: dict, status: int) -> None:
    sweep_id = post_yaml(client).json()["id"]
    assert client.get(f"/sweeps/{sweep_id}/report", params=params).status_code == status
    assert client.get("/sweeps/999999/report").status_code == 404
