"""Helpers for the UI tests: finished sweeps seeded through the models, a logged-in client."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.orm import Session

from api.main import create_app
from shared.db.models import LatestMetric, Metric, Run, RunStatus, Sweep, SweepStatus, utcnow
from shared.db.session import make_engine
from shared.settings import Settings

TOKEN = "swp_ui-test-token-0123456789"
CURVE_KEYS = (
    "train_loss",
    "validation_loss",
    "accuracy_argmax",
    "accuracy_svc",
    "accuracy_svc_heldout",
)
YAML = """\
matrix:
  hidden: [16, 32]
experiment_name: ui/tiny_${matrix_slug}
model: |
  nn.Sequential(nn.Flatten(), nn.Linear(784, ${hidden}), nn.ReLU(), nn.Linear(${hidden}, 10))
train_set: fmnist_dataset(train=True)
validation_set: fmnist_dataset(train=False)
batch_size: 64
learnrate: 0.001
max_inputs: 3200
"""


@dataclass
class Seeded:
    sweep_id: int
    run_ids: list[int]
    slugs: list[str]


def curve_value(key: str, run: int, step: int) -> float:
    """A plausible, deterministic learning curve: losses fall, accuracies rise."""
    progress = 1 - math.exp(-step / 2_000)
    if key.endswith("loss"):
        return 0.1 * (1 - 0.6 * progress) / (1 + 0.1 * run)
    return 0.6 + 0.3 * progress + 0.01 * run


def seed_sweep(
    db_url: str,
    *,
    runs: int = 2,
    points: int = 5,
    every: int = 640,
    name: str = "ui/tiny",
    status: RunStatus = RunStatus.SUCCEEDED,
    matrix_key: str = "hidden",
) -> Seeded:
    """A sweep whose runs have `points` points of every curve key and a finished summary."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            sweep = Sweep(name=name, yaml_text=YAML, matrix_keys=[matrix_key])
            session.add(sweep)
            session.flush()
            start = utcnow() - timedelta(minutes=5)
            for i in range(runs):
                value = 16 * (i + 1)
                run = Run(
                    sweep_id=sweep.id,
                    matrix_id=str(i + 1),
                    slug=f"{matrix_key}:{value}",
                    experiment_name=f"{name}_{matrix_key}:{value}",
                    params={matrix_key: value},
                    config={"matrix_slug": f"{matrix_key}:{value}", "max_inputs": every * points},
                    config_hash=f"{sweep.id:032x}{i:032x}",
                    max_inputs=every * points,
                    status=status,
                    inputs_seen=every * points,
                    created_at=start,
                    started_at=start,
                    finished_at=start + timedelta(seconds=30) if status.finished else None,
                    train_seconds=30.0 + i,
                    worker_host="ui-test-host",
                    device="cpu",
                    provenance={"seed": 0, "torch": "2.x", "host": "ui-test-host"},
                )
                session.add(run)
                session.flush()
                _add_points(session, run.id, i, points, every)
            if status.finished:
                sweep.status, sweep.finished_at = SweepStatus.FINISHED, utcnow()
            session.commit()
            ids = [r.id for r in sweep.runs]
            return Seeded(sweep.id, ids, [r.slug for r in sweep.runs])
    finally:
        engine.dispose()


def _add_points(session: Session, run_id: int, index: int, points: int, every: int) -> None:
    rows = [
        Metric(run_id=run_id, key=key, step=p * every, value=curve_value(key, index, p * every))
        for key in CURVE_KEYS
        for p in range(1, points + 1)
    ]
    last = points * every
    summary = {key: curve_value(key, index, last) for key in CURVE_KEYS}
    summary.update(model_params=12_730.0 + index, throughput=5_000.0 + index, train_seconds=30.0)
    session.add_all(rows)
    session.add_all(
        LatestMetric(run_id=run_id, key=key, step=last, value=value)
        for key, value in summary.items()
    )


def ui_settings(db_url: str, broker_url: str = "redis://127.0.0.1:1/0") -> Settings:
    return Settings(database_url=db_url, broker_url=broker_url, api_token=TOKEN)


@pytest.fixture
def ui_client(db_url: str, broker_url: str) -> Iterator[TestClient]:
    """A TestClient on the real app (lifespan run, so the bootstrap token exists)."""
    app = create_app(ui_settings(db_url, broker_url))
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        yield client


@pytest.fixture
def logged_in(ui_client: TestClient) -> TestClient:
    response = ui_client.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
    assert response.status_code == 303, response.text
    return ui_client


def add_points(db_url: str, run_ids: list[int], steps: list[int]) -> None:
    """More points of every curve key, as a worker's metric flush would add them."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            session.add_all(
                Metric(run_id=run_id, key=key, step=step, value=curve_value(key, i, step))
                for i, run_id in enumerate(run_ids)
                for key in CURVE_KEYS
                for step in steps
            )
            session.commit()
    finally:
        engine.dispose()


def finish_runs(db_url: str, run_ids: list[int]) -> None:
    """Mark runs succeeded and their sweep finished, as the worker's outcome would."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            for run_id in run_ids:
                run = session.get(Run, run_id)
                assert run is not None
                run.status, run.finished_at = RunStatus.SUCCEEDED, utcnow()
                run.sweep.status, run.sweep.finished_at = SweepStatus.FINISHED, utcnow()
            session.commit()
    finally:
        engine.dispose()


def seed_large_sweep(db_url: str, runs: int, validations: int, every: int = 1_000) -> Seeded:
    """A finished sweep of `runs` runs with `validations` points of every curve key (bulk)."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            sweep = Sweep(name="large", yaml_text="# large\n", matrix_keys=["i"])
            session.add(sweep)
            session.flush()
            run_rows = [
                Run(sweep_id=sweep.id, matrix_id=str(i), slug=f"i:{i}", experiment_name=f"l_{i}",
                    params={"i": i}, config={}, config_hash=f"{sweep.id:032x}{i:032x}",
                    status=RunStatus.SUCCEEDED)
                for i in range(runs)
            ]  # fmt: skip
            session.add_all(run_rows)
            session.flush()
            session.execute(
                insert(Metric),
                [{"run_id": run.id, "key": key, "step": (p + 1) * every,
                  "value": curve_value(key, n, (p + 1) * every)}
                 for n, run in enumerate(run_rows) for key in CURVE_KEYS
                 for p in range(validations)],
            )  # fmt: skip
            session.commit()
            return Seeded(sweep.id, [r.id for r in run_rows], [r.slug for r in run_rows])
    finally:
        engine.dispose()
