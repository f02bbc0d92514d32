"""Fixtures for API tests: the real app on this test's database and Redis, a token, helpers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from shared.db.models import LatestMetric, Metric, Run, RunStatus, utcnow

API_TOKEN = "swp_test-bootstrap-token-0123456789"

# Two runs of a tiny model; nothing here is executed by the API.
TINY_YAML = """\
matrix:
  lr: [0.1, 0.01]
experiment_name: tiny/lin_${matrix_slug}
model: |
  nn.Linear(4, 2)
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: 4
learnrate: ${lr}
optimizer: SGD
max_inputs: 64
"""


@pytest.fixture
def api_env(
    settings_env: dict[str, str], broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """settings_env plus this test's Redis as the broker and a bootstrap token."""
    from shared.settings import get_settings

    monkeypatch.setenv("SWEEPS_BROKER_URL", broker_url)
    monkeypatch.setenv("SWEEPS_API_TOKEN", API_TOKEN)
    get_settings.cache_clear()
    return {**settings_env, "SWEEPS_BROKER_URL": broker_url, "SWEEPS_API_TOKEN": API_TOKEN}


@pytest.fixture
def client(api_env: dict[str, str]) -> Iterator[TestClient]:
    """The app from the factory, lifespan entered, sending the bootstrap token."""
    from api.main import create_app

    with TestClient(create_app(), headers={"Authorization": f"Bearer {API_TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def anon(api_env: dict[str, str]) -> Iterator[TestClient]:
    """The same app, with no Authorization header."""
    from api.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def queue(broker_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(broker_url)
    yield client
    client.close()


def queued_run_ids(client: redis.Redis, queue_name: str = "runs") -> list[int]:
    """Run ids of the task messages waiting in the Celery queue, oldest first."""
    ids = []
    for raw in reversed(client.lrange(queue_name, 0, -1)):  # LPUSH: newest first
        message = json.loads(raw)
        assert message["headers"]["task"] == "runs.train"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


def post_yaml(client: TestClient, text: str = TINY_YAML, **params: Any):
    return client.post(
        "/sweeps", content=text, params=params, headers={"Content-Type": "application/x-yaml"}
    )


def finish_run(
    session: Session,
    run_id: int,
    *,
    status: RunStatus = RunStatus.SUCCEEDED,
    latest: dict[str, tuple[int, float]] | None = None,
    series: dict[str, list[tuple[int, float]]] | None = None,
) -> None:
    """Write what a worker writes when a run ends: status, metric points, latest values."""
    run = session.get(Run, run_id)
    assert run is not None
    run.status = status
    run.finished_at = utcnow()
    run.inputs_seen = run.max_inputs or 0
    for key, points in (series or {}).items():
        session.add_all(Metric(run_id=run_id, key=key, step=s, value=v) for s, v in points)
    for key, (step, value) in (latest or {}).items():
        session.add(LatestMetric(run_id=run_id, key=key, step=step, value=value))
    session.commit()


@pytest.fixture
def app_with_data(api_env: dict[str, str]) -> Iterator[Any]:
    """The app, lifespan entered, with one sweep of two runs (one finished, with metrics)."""
    from api.main import create_app

    app = create_app()
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with TestClient(app, headers=headers) as client:
        created = post_yaml(client, TINY_YAML).json()
        engine = create_engine(api_env["SWEEPS_DATABASE_URL"])
        with Session(engine) as session:
            finish_run(
                session,
                created["runs"][0]["id"],
                latest={"validation_loss": (64, 0.5), "accuracy_argmax": (64, 0.75)},
                series={"validation_loss": [(32, 0.7), (64, 0.5)]},
            )
        engine.dispose()
        yield app  # app.state keeps the lifespan's engine for schemathesis' own clients
