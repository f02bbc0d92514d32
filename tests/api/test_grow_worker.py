"""Growing a sweep through the API and a real worker: only new cells train, also mid-sweep.

The second file `$extends` the first and adds a matrix value, so this also runs a merged file
on a worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import Run
from tests.support.db import sweep_text
from tests.support.stack import stack_env, start_worker, wait_for_runs

pytestmark = pytest.mark.slow

FIRST = (
    sweep_text("tiny.yaml")
    .replace("trainer: experiments.reptrainer.RepresentationClassTrainer\n", "")
    .replace("tiny/mlp_", "tiny/grow_")
    .replace("max_inputs: 2_048", "max_inputs: 20_480\nnum_epochs_between_validations: 10")
)
GROWN = "$extends: first.yaml\nmatrix:\n  hidden: [4, 8, 16]\n"


def test_grown_sweep_trains_only_new_cells_and_links_the_ones_in_flight(
    client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        heartbeat_seconds=0.5, metrics_flush_seconds=0.5,
    )  # fmt: skip
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        first = client.post("/sweeps", json={"yaml": FIRST, "filename": "first.yaml"}).json()
        old = [r["id"] for r in first["runs"]]
        # Submitted while the first sweep's runs are queued or training.
        body = {"yaml": GROWN, "filename": "grown.yaml", "files": {"first.yaml": FIRST}}
        grown = client.post("/sweeps", json=body)
        assert grown.status_code == 201, grown.text
        new = [r["id"] for r in grown.json()["runs"]]
        assert [r["reused_from_id"] for r in grown.json()["runs"]] == [*old, None]
        assert grown.json()["enqueued"] == 1  # only hidden=16 is trained
        table = client.get(f"/sweeps/{grown.json()['id']}/table").json()
        assert [row["status"] for row in table["rows"]][:2] == ["linked", "linked"]

        wait_for_runs(db_url, old, timeout=180, diagnostics=worker.log_tail)
        wait_for_runs(db_url, new, {"succeeded", "reused"}, timeout=180,
                      diagnostics=worker.log_tail)  # fmt: skip
    session.expire_all()
    runs = [session.get_one(Run, run_id) for run_id in new]
    assert [r.status.value for r in runs] == ["reused", "reused", "succeeded"]
    # Each configuration was trained once: the linked runs never started.
    assert [r.attempts for r in runs] == [0, 0, 1]
    assert [session.get_one(Run, run_id).attempts for run_id in old] == [1, 1]
    # One table shows the grown grid: old results through the links, and the new cell.
    table = client.get(f"/sweeps/{grown.json()['id']}/table").json()
    assert [row["values"]["hidden"] for row in table["rows"]] == [4, 8, 16]
    losses = [v for row in table["rows"] for k, v in row["values"].items()
              if k.startswith("validation loss")]  # fmt: skip
    assert len(losses) == 3 and all(isinstance(v, float) for v in losses)
    assert client.get(f"/sweeps/{grown.json()['id']}").json()["status"] == "finished"
