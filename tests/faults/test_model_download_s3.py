"""GET /runs/{id}/checkpoint streams a model from an object store (SWEEPS_ARTIFACT_URL)."""

from __future__ import annotations

import io

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.artifacts import run_location
from shared.db.models import RunStatus
from tests.api.conftest import TINY_YAML, finish_run, post_yaml
from tests.faults.s3 import S3Server
from worker.engine import checkpoint as ckpt
from worker.engine import read_model_file

pytestmark = pytest.mark.timeout(120)
TOKEN = "swp_s3-model-token-0123456789"


def test_model_streams_from_the_object_store(
    s3: S3Server,
    settings_env: dict[str, str],
    broker_url: str,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from api.main import create_app
    from shared.settings import get_settings

    location = s3.url("store")
    for name, value in {
        "SWEEPS_ARTIFACT_URL": location, "SWEEPS_BROKER_URL": broker_url, "SWEEPS_API_TOKEN": TOKEN,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        run_id = post_yaml(client, TINY_YAML).json()["runs"][0]["id"]
        finish_run(session, run_id, status=RunStatus.SUCCEEDED)
        model = torch.nn.Linear(700, 700)  # ~2 MB: two chunks of the stream
        ckpt.save_model(run_location(location, run_id), model, {"lr": 0.1})
        response = client.get(f"/runs/{run_id}/checkpoint")
        assert response.status_code == 200, response.text
    saved = read_model_file(io.BytesIO(response.content))
    assert saved["config"] == {"lr": 0.1}
    assert torch.equal(saved["state_dict"]["weight"], model.weight.detach())
