"""What the format accepts, a real worker trains: files that used to be accepted and then fail.

- no `validation_set` (optional in FORMAT.md): the run trains and reports its train curves;
- `num_workers: 2`: a DataLoader with worker processes inside a Celery pool process;
- a one-line `|` block on the file's last line, without a final newline: it is code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run
from tests.support.stack import stack_env, start_worker, wait_for_runs

pytestmark = pytest.mark.slow

COMMON = """\
model: |
  nn.Linear(4, 2)
batch_size: 32
learnrate: 0.01
optimizer: SGD
loss_function: l2
seed: 0
"""
TENSORS = "torch.utils.data.TensorDataset(torch.randn(256, 4), torch.randn(256, 2))"

NO_VALIDATION = f"""\
experiment_name: accepted/no_validation
train_set: |
  {TENSORS}
max_inputs: 2_048
{COMMON}"""

# A plain list is not a tensor dataset, so the engine batches it with a DataLoader.
NUM_WORKERS = f"""\
experiment_name: accepted/num_workers
train_set: |
  [(torch.randn(4), torch.randn(2)) for _ in range(128)]
validation_set: |
  [(torch.randn(4), torch.randn(2)) for _ in range(64)]
num_workers: 2
max_inputs: 256
{COMMON}"""

LAST_LINE_BLOCK = f"""\
experiment_name: accepted/last_line_block
train_set: |
  {TENSORS}
validation_set: |
  {TENSORS}
max_inputs: 256
{COMMON}train_input_transforms: |
  [lambda x: x * 1.0]"""


def _submit(client: TestClient, text: str) -> int:
    response = client.post("/sweeps", content=text, headers={"Content-Type": "application/x-yaml"})
    assert response.status_code == 201, response.text
    (run,) = response.json()["runs"]
    return int(run["id"])


def _keys(session: Session, run_id: int) -> set[str]:
    return set(session.scalars(select(Metric.key).where(Metric.run_id == run_id)))


def test_accepted_files_train_to_success(
    client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    assert not LAST_LINE_BLOCK.endswith("\n")
    ids = [_submit(client, text) for text in (NO_VALIDATION, NUM_WORKERS, LAST_LINE_BLOCK)]
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        heartbeat_seconds=0.5, metrics_flush_seconds=0.5,
    )  # fmt: skip
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        statuses = wait_for_runs(db_url, ids, {"succeeded", "failed"}, timeout=120,
                                 diagnostics=worker.log_tail)  # fmt: skip
    session.expire_all()
    errors = {run_id: session.get_one(Run, run_id).error for run_id in ids}
    assert set(statuses.values()) == {"succeeded"}, errors
    no_validation, num_workers, last_line = ids

    keys = _keys(session, no_validation)
    assert {"train_loss", "learnrate", "train_seconds", "throughput"} <= keys
    assert "validation_loss" not in keys
    sweep_id = session.get_one(Run, no_validation).sweep_id
    table = client.get(f"/sweeps/{sweep_id}/table").json()
    (row,) = table["rows"]
    assert isinstance(row["values"]["train loss"], float)
    assert row["values"]["validation loss"] is None

    assert "validation_loss" in _keys(session, num_workers)
    config = session.get_one(Run, last_line).config
    assert config["train_input_transforms"] == "[lambda x: x * 1.0]\n"
    assert "validation_loss" in _keys(session, last_line)
