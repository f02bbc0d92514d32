"""A user's nn-experiments checkout (a stand-in, tests/support/nnexp_project) through the API and
real worker processes: its trainer trains with its own train(), metrics and checkpoints arrive,
a run resumes on another worker, cancel ends the run's process, bad keys fail clearly."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Run
from shared.settings import get_settings
from tests.api.conftest import API_TOKEN, post_yaml
from tests.support.db import stored_steps
from tests.support.stack import REPO, stack_env, start_worker, wait_for_runs, wait_until

pytestmark = pytest.mark.slow

PROJECT = REPO / "tests" / "support" / "nnexp_project"

# In the original's style: its trainer, its scheduler, its keys, its helpers and ${PATH}.
DENOISE = """\
experiment_name: denoise/blobs_${matrix_slug}

matrix:
  amt: [0.05, 0.2]

trainer: experiments.denoise.trainer.TrainDenoising

train_set: |
  ds = blob_images(512, seed=1)
validation_set: |
  limit(blob_images(128, seed=2), 64)

batch_size: 32
learnrate: 0.01
optimizer: AdamW
scheduler: CosineAnnealingWarmupLR
loss_function: l2
max_inputs: 2048
num_inputs_between_validations: 512
num_train_loss_steps: 256
noise_amount: ${amt}
gradient_clipping: 1.0
seed: |
  40 + 2

globals:
  WIDTH: 4
  README: open("${PATH}/README.md").read()

model: |
  assert "stand-in" in README
  EncoderConv2d(1, 1, width=WIDTH)
"""


def _env(db_url: str, broker_url: str, tmp_path: Path, **settings: object) -> dict[str, str]:
    return stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        heartbeat_seconds=0.5, metrics_flush_seconds=0.5, project_root=PROJECT, **settings,
    )  # fmt: skip


@pytest.fixture
def project_client(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The API beside workers that have the checkout: it reads its files, imports none."""
    from api.main import create_app

    monkeypatch.setenv("SWEEPS_PROJECT_ROOT", str(PROJECT))
    get_settings.cache_clear()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        yield client


def _run_ids(client: TestClient, text: str) -> list[int]:
    created = post_yaml(client, text)
    assert created.status_code == 201, created.text
    return [r["id"] for r in created.json()["runs"]]


EARLY_STOP = """
early_stop:
  metric: validation_loss
  min_inputs: 512
  reduction_factor: 2
"""


def test_project_trainer_trains_and_bad_input_fails_before_training(
    project_client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    # Two runs; the second (more noise, a higher loss) is pruned at its first validation.
    good, noisier = _run_ids(project_client, DENOISE + EARLY_STOP)
    # Keys and names the API cannot check; the worker refuses them before training.
    (bad_key,) = _run_ids(project_client, DENOISE.replace("[0.05, 0.2]", "[0.1]")
                          .replace("noise_amount:", "noise_amout:"))  # fmt: skip
    (missing,) = _run_ids(project_client, DENOISE.replace("[0.05, 0.2]", "[0.3]")
                          .replace("EncoderConv2d(1, 1, width=WIDTH)", "ExtraNet(1)"))  # fmt: skip
    env = _env(db_url, broker_url, tmp_path)
    ids = [good, noisier, bad_key, missing]
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        wait_for_runs(db_url, ids, {"succeeded", "failed", "pruned"}, timeout=180,
                      diagnostics=worker.log_tail)  # fmt: skip
        log = worker.log()
    session.expire_all()
    runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)))}
    assert runs[good].status.value == "succeeded", runs[good].error
    assert runs[good].inputs_seen == 2048
    # every scalar the trainer logged, at the input count it was logged at
    assert stored_steps(session, good, "validation_loss") == [512, 1024, 1536, 2048]
    assert stored_steps(session, good, "train_loss") == list(range(256, 2049, 256))
    assert stored_steps(session, good, "learnrate_1") == list(range(256, 2049, 256))
    # early stopping on the trainer's own validation_loss
    assert runs[noisier].status.value == "pruned", runs[noisier].error
    assert stored_steps(session, noisier, "validation_loss") == [512]
    # each run's checkpoints in its own artifact folder
    for run_id in (good, noisier):
        assert (tmp_path / "artifacts" / "runs" / str(run_id) / "checkpoints" / "best.pt").is_file()
    assert runs[bad_key].status.value == "failed" and runs[bad_key].inputs_seen == 0
    assert "trainer 'experiments.denoise.trainer.TrainDenoising' does not take 'noise_amout'" in (
        runs[bad_key].error or ""
    )
    error = runs[missing].error or ""
    assert runs[missing].status.value == "failed" and "name 'ExtraNet' is not defined" in error
    assert "src.models.extra (ModuleNotFoundError: No module named" in error
    # the module that fails to import is reported once, at the worker's start
    assert log.count("project module 'src.models.extra' cannot be imported") == 1


def test_project_run_resumes_on_another_worker(
    project_client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    text = DENOISE.replace("[0.05, 0.2]", "[0.1]").replace("max_inputs: 2048", "max_inputs: 20480")
    (run_id,) = _run_ids(project_client, text)
    snapshot = tmp_path / "artifacts" / "runs" / str(run_id) / "checkpoints" / "snapshot.pt"
    env = _env(db_url, broker_url, tmp_path, lease_seconds=3, reconcile_seconds=0.5)
    with start_worker(env, log_path=tmp_path / "first.log", name="first") as first:
        wait_until(lambda: snapshot.is_file() and stored_steps(session, run_id, "validation_loss"),
                   timeout=90, what="a stored checkpoint", diagnostics=first.log_tail)  # fmt: skip
        first.kill()  # the whole host goes
    with start_worker(env, log_path=tmp_path / "second.log", name="second") as second:
        wait_for_runs(db_url, [run_id], timeout=240, diagnostics=second.log_tail)
        log = second.log()
    resumed = re.search(r"resumed from the stored checkpoint at (\d+) inputs", log)
    assert resumed is not None and int(resumed.group(1)) > 0, log[-3000:]
    session.expire_all()
    run = session.get_one(Run, run_id)
    assert (run.attempts, run.inputs_seen) == (2, 20480)
    steps = stored_steps(session, run_id, "validation_loss")
    assert steps == list(range(512, 20481, 512))


def test_cancel_ends_the_run_process(
    project_client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    text = DENOISE.replace("[0.05, 0.2]", "[0.1]").replace("2048", "100_000_000")
    (run_id,) = _run_ids(project_client, text)
    env = _env(db_url, broker_url, tmp_path)
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        wait_until(lambda: stored_steps(session, run_id, "train_loss"), timeout=90,
                   what="the run to train", diagnostics=worker.log_tail)  # fmt: skip
        session.expire_all()
        owner = session.get_one(Run, run_id).lease_owner or ""
        pid = int(owner.split(":")[1])
        assert os.path.exists(f"/proc/{pid}")
        cancelled = project_client.post(f"/runs/{run_id}/cancel")
        assert cancelled.json()["cancel_requested"] is True
        wait_for_runs(db_url, [run_id], "cancelled", timeout=60, diagnostics=worker.log_tail)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30,
                   what="the run's process to end")  # fmt: skip
