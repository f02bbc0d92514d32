"""Plugins and the autoencoder trainer through the API and a real worker process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run
from shared.settings import get_settings
from tests.api.conftest import API_TOKEN, post_yaml
from tests.support.stack import REPO, spawn, stack_env, start_worker, wait_for_runs, wait_until

pytestmark = pytest.mark.slow

PLUGIN_PATH = str(REPO / "tests" / "support" / "plugins")

PLUGIN_SWEEP = """\
matrix:
  trainer: [sweeps_test_plugin.MarkedLossTrainer, sweeps_test_plugin.NoSuchTrainer]
experiment_name: plugin/${matrix_slug}
train_set: |
  bright_squares(256)
validation_set: |
  bright_squares(64, seed=1)
trainer: ${trainer}
model: |
  nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
batch_size: 32
learnrate: 0.01
optimizer: AdamW
loss_function: l2
max_inputs: 512
"""

# The plugin run's data without the test plugin's helper.
SQUARES = """
globals:
  _squares: |
    lambda n, seed=0: torch.utils.data.TensorDataset(
        torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed)),
        torch.rand(n, 2, generator=torch.Generator().manual_seed(seed + 1)))
"""

AUTOENCODER_SWEEP = """\
experiment_name: ae/tiny
trainer: src.train.train_autoencoder.TrainAutoencoder
train_set: |
  g = torch.Generator().manual_seed(0)
  torch.utils.data.TensorDataset(torch.rand(512, 1, 4, 4, generator=g))
validation_set: |
  g = torch.Generator().manual_seed(1)
  torch.utils.data.TensorDataset(torch.rand(128, 1, 4, 4, generator=g))
model: |
  nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 16),
                nn.Unflatten(1, (1, 4, 4)))
batch_size: 32
learnrate: 0.01
optimizer: AdamW
loss_function: l2
max_inputs: 8_192
num_inputs_between_validations: 1_024
seed: 1
early_stop:
  metric: validation_loss
  min_inputs: 1_024
"""


def _env(db_url: str, broker_url: str, tmp_path: Path, plugins: str) -> dict[str, str]:
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        heartbeat_seconds=0.5, metrics_flush_seconds=0.5, plugins=plugins,
    )  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([PLUGIN_PATH, env["PYTHONPATH"]])
    return env


@pytest.fixture
def plugin_client(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API with SWEEPS_PLUGINS set, as it would run beside plugin workers."""
    from api.main import create_app

    monkeypatch.setenv("SWEEPS_PLUGINS", "sweeps_test_plugin")
    get_settings.cache_clear()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        yield client


def test_plugin_names_and_trainer_are_resolved_on_the_worker(
    plugin_client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    client = plugin_client
    # The API knows the plugin's name (not its code): it accepts trainers under it...
    assert "sweeps_test_plugin" not in sys.modules
    created = post_yaml(client, PLUGIN_SWEEP)
    assert created.status_code == 201, created.text
    # ...and still refuses a trainer no plugin or built-in provides.
    refused = post_yaml(client, PLUGIN_SWEEP.replace("sweeps_test_plugin.No", "other.No"))
    assert refused.status_code == 422 and "trainer" in refused.json()["detail"]["message"]
    marked, missing = (r["id"] for r in created.json()["runs"])
    env = _env(db_url, broker_url, tmp_path, "sweeps_test_plugin")
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        wait_for_runs(db_url, [marked, missing], {"succeeded", "failed"}, timeout=120,
                      diagnostics=worker.log_tail)  # fmt: skip
    session.expire_all()
    ok, bad = session.get_one(Run, marked), session.get_one(Run, missing)
    assert ok.status.value == "succeeded", ok.error
    losses = session.scalars(
        select(Metric.value).where(Metric.run_id == marked, Metric.key == "validation_loss")
    ).all()
    assert losses and all(value > 1000 for value in losses)  # the plugin's trainer ran
    assert bad.status.value == "failed" and bad.inputs_seen == 0
    assert "'sweeps_test_plugin.NoSuchTrainer' cannot be found in plugin" in (bad.error or "")


def test_autoencoder_trainer_learns_to_reconstruct(
    client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    created = post_yaml(client, AUTOENCODER_SWEEP)
    assert created.status_code == 201, created.text
    (run_id,) = (r["id"] for r in created.json()["runs"])
    env = _env(db_url, broker_url, tmp_path, "")
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        wait_for_runs(db_url, [run_id], timeout=120, diagnostics=worker.log_tail)
    curve = client.get(f"/runs/{run_id}/metrics", params={"keys": "validation_loss"}).json()
    points = curve["series"]["validation_loss"]
    assert [p[0] for p in points] == list(range(512, 8_193, 512))  # each epoch
    # Reconstruction of uniform noise through 8 units: the loss keeps falling below the
    # first validation's (after one epoch).
    assert points[-1][1] < 0.7 * points[0][1]


def test_a_plugin_that_cannot_be_imported_fails_only_the_runs_that_use_it(
    api_env: dict[str, str], db_url: str, broker_url: str, tmp_path: Path, session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from api.main import create_app

    monkeypatch.setenv("SWEEPS_PLUGINS", "sweeps_broken_plugin")
    get_settings.cache_clear()
    text = PLUGIN_SWEEP.replace("sweeps_test_plugin.MarkedLossTrainer", "Trainer").replace(
        "sweeps_test_plugin.NoSuchTrainer", "sweeps_broken_plugin.SomeTrainer"
    )
    with TestClient(create_app(), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        created = post_yaml(client, text.replace("bright_squares", "_squares") + SQUARES)
    assert created.status_code == 201, created.text
    plain, broken = (r["id"] for r in created.json()["runs"])
    env = _env(db_url, broker_url, tmp_path, "sweeps_broken_plugin")
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        wait_for_runs(db_url, [plain, broken], {"succeeded", "failed"}, timeout=120,
                      diagnostics=worker.log_tail)  # fmt: skip
        log = worker.log()
    # reported once, at the worker's start; the worker runs on
    line = (
        "plugin 'sweeps_broken_plugin' (SWEEPS_PLUGINS or entry point) cannot be imported: "
        "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'; runs that use "
        "it will fail"
    )
    assert log.count(line) == 1
    session.expire_all()
    assert session.get_one(Run, plain).status.value == "succeeded"
    failed = session.get_one(Run, broken)
    assert failed.status.value == "failed" and failed.inputs_seen == 0
    assert "plugin 'sweeps_broken_plugin' cannot be imported: ModuleNotFoundError" in (
        failed.error or ""
    )


def test_a_project_root_that_is_no_folder_stops_the_worker_at_start(
    db_url: str, broker_url: str, tmp_path: Path
) -> None:
    env = _env(db_url, broker_url, tmp_path, "")
    env["SWEEPS_PROJECT_ROOT"] = str(tmp_path / "no-such-checkout")
    code = "from worker.celery_app import run_worker; run_worker()"
    log = tmp_path / "worker.log"
    with spawn("worker", [sys.executable, "-c", code], env, log) as proc:
        wait_until(lambda: not proc.alive(), timeout=60, what="the worker to exit")
        assert proc.popen.returncode != 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines == [
        f"sweeps worker: SWEEPS_PROJECT_ROOT={tmp_path / 'no-such-checkout'} does not exist; "
        "name a checkout of your project"
    ]
