"""Worker test helpers: few torch threads, tiny configs, a recording report; DB fixtures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from sqlalchemy.orm import Session

from shared.db.session import make_engine
from shared.settings import Settings, get_settings
from tests.support.db import insert_runs

TRAIN_SET = """
g = torch.Generator().manual_seed(1)
X = torch.rand(N_TRAIN, 1, 8, 8, generator=g)
Y = (X.mean((1, 2, 3)) * 997).long() % CLASSES
ClassLogitsDataset(torch.utils.data.TensorDataset(X, Y), num_classes=CLASSES, tuple_position=1)
"""
VALIDATION_SET = """
ClassLogitsDataset(
    torch.utils.data.TensorDataset(X[:N_VAL] * 0.9, Y[:N_VAL]),
    num_classes=CLASSES, tuple_position=1,
)
"""
MODEL = """
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, CODE), nn.ReLU())
        self.linear = nn.Linear(CODE, CLASSES)

    def forward(self, x):
        return self.linear(self.encoder(x))

Tiny()
"""


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A complete run configuration over a 256-image generated dataset and a 1k-param model."""
    config: dict[str, Any] = {
        "experiment_name": "tiny",
        "globals": {"N_TRAIN": 256, "N_VAL": 100, "CLASSES": 4, "CODE": 12},
        "train_set": TRAIN_SET,
        "validation_set": VALIDATION_SET,
        "model": MODEL,
        "trainer": "experiments.reptrainer.RepresentationClassTrainer",
        "batch_size": 32,
        "learnrate": 0.003,
        "optimizer": "AdamW",
        "loss_function": "l2",
        "max_inputs": 1000,
        "seed": 7,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


class Recorder:
    """A `report` callback that keeps every event, with helpers to read the metric points."""

    def __init__(self, fail_at: tuple[str, int] | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fail_at = fail_at  # raise when reporting this (key, step): a simulated crash

    def __call__(self, event: str, **payload: Any) -> None:
        if event == "metrics" and self.fail_at is not None:
            for key, step, _ in payload["points"]:
                if (key, step) == self.fail_at:
                    raise RuntimeError(f"simulated crash while reporting {key}@{step}")
        self.events.append((event, payload))

    def points(self) -> list[tuple[str, int, float]]:
        return [p for e, payload in self.events if e == "metrics" for p in payload["points"]]

    def series(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = defaultdict(dict)
        for key, step, value in self.points():
            out[key][step] = value
        return dict(out)

    def steps(self, key: str) -> list[int]:
        return [step for k, step, _ in self.points() if k == key]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [payload for e, payload in self.events if e == event]


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


# --- worker-side fixtures (claim, queries, tasks) ------------------------------------------

MakeRuns = Callable[..., list[int]]


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """A session on this test's database (the test commits what it wants others to see)."""
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


@pytest.fixture
def make_runs(session: Session) -> MakeRuns:
    """`make_runs(n)` or `make_runs(configs=[...])`: queued runs in one new sweep."""

    def make(n: int = 1, *, configs: list[dict[str, Any]] | None = None, **kw: Any) -> list[int]:
        return insert_runs(session, configs or [{"max_inputs": 100}] * n, **kw)

    return make


@pytest.fixture
def fast_settings(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for calling the task in-process: heartbeats and flushes every 0.2 s."""
    monkeypatch.setenv("SWEEPS_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("SWEEPS_METRICS_FLUSH_SECONDS", "0.2")
    monkeypatch.setenv("SWEEPS_LEASE_SECONDS", "30")
    get_settings.cache_clear()
    return get_settings()
