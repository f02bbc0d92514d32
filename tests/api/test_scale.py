"""Big sweeps read as a person reads them: GET /sweeps/{id} and the table are paged with a
total, status counts cover every run; and the hold rule (shared/db/holds.py) on real rows,
through the worker's own `claim_run` / `finish_run`."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus
from shared.domain.holds import error_signature
from shared.domain.runs import claim_run, finish_run

from .conftest import finish_run as store_result
from .conftest import post_yaml, queued_run_ids

GRID = """\
matrix:
  a: [1, 2, 3, 4, 5]
  b: [1, 2, 3, 4, 5]
experiment_name: grid/${matrix_slug}
model: |
  nn.Linear(4, ${a})
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: ${b}
learnrate: 0.1
optimizer: SGD
max_inputs: 64
"""


def _fail(session: Session, run_id: int, error: str) -> None:
    """What a worker does with a run whose code raised: claim it, then record it failed."""
    assert claim_run(session, run_id, "w1", 30.0) is not None
    assert finish_run(session, run_id, "w1", RunStatus.FAILED, error=error)
    session.commit()


def _succeed(session: Session, run_id: int) -> None:
    assert claim_run(session, run_id, "w1", 30.0) is not None
    assert finish_run(session, run_id, "w1", RunStatus.SUCCEEDED)
    session.commit()


def test_sweep_runs_are_paged_with_a_total_and_counts_of_every_run(
    client: TestClient, session: Session
) -> None:
    created = post_yaml(client, GRID).json()
    sweep_id, ids = created["id"], [r["id"] for r in created["runs"]]
    assert len(ids) == 25 and created["enqueued"] == 25
    _succeed(session, ids[0])

    page = client.get(f"/sweeps/{sweep_id}", params={"limit": 10, "offset": 20}).json()
    assert [r["id"] for r in page["runs"]] == ids[20:]
    assert (page["runs_total"], page["runs_limit"], page["runs_offset"]) == (25, 10, 20)
    assert page["run_count"] == 25 and page["counts"] == {"queued": 24, "succeeded": 1}
    # Unpaged by default for what fits in a page: an old client sees every run as before.
    assert [r["id"] for r in client.get(f"/sweeps/{sweep_id}").json()["runs"]] == ids

    only = client.get(f"/sweeps/{sweep_id}", params={"status": "succeeded,failed"}).json()
    assert [r["id"] for r in only["runs"]] == [ids[0]] and only["runs_total"] == 1
    bad = client.get(f"/sweeps/{sweep_id}", params={"status": "done"})
    assert bad.status_code == 422 and "'done'" in bad.text


def test_the_table_pages_after_sorting_and_marks_the_whole_tables_best(
    client: TestClient, session: Session
) -> None:
    created = post_yaml(client, GRID).json()
    sweep_id, ids = created["id"], [r["id"] for r in created["runs"]]
    for i, run_id in enumerate(ids):  # run i has loss 1/(i+1): the last is best
        store_result(session, run_id, latest={"validation_loss": (64, 1 / (i + 1))})
    path = f"/sweeps/{sweep_id}/table"

    first = client.get(path, params={"limit": 5, "sort": "validation_loss"}).json()
    assert [r["run_id"] for r in first["rows"]] == ids[::-1][:5]
    assert (first["total"], first["offset"]) == (25, 0)
    assert any(name.startswith("validation loss") for name in first["rows"][0]["best"])
    last = client.get(path, params={"limit": 5, "offset": 20, "sort": "validation_loss"}).json()
    assert [r["run_id"] for r in last["rows"]] == ids[::-1][20:]
    assert all(not r["best"] for r in last["rows"])  # best of the whole table, not the page
    # Markdown says what a page leaves out; without a limit it holds every row.
    md = client.get(path, params={"format": "md", "limit": 5}).text
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + 5  # header, rows
    assert "(rows 1-5 of 25;" in md
    assert client.get(path, params={"format": "csv"}).text.count("\n") == 26


def test_error_signature_ignores_the_numbers_a_matrix_changes() -> None:
    one = "RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x16 and 4x2)"
    other = "RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x16 and 8x2)"
    assert error_signature(one) == error_signature(other)
    assert error_signature(one) != error_signature("ValueError: bad value 3")


def test_three_alike_failures_hold_the_queued_runs_and_retry_needs_a_file_or_force(
    client: TestClient, session: Session, broker_url: str
) -> None:
    created = post_yaml(client, GRID).json()
    sweep_id, ids = created["id"], [r["id"] for r in created["runs"]]
    queue = redis.Redis.from_url(broker_url)
    for n, run_id in enumerate(ids[:3]):
        _fail(session, run_id, f"RuntimeError: shapes (32x{n} and 4x2)\nmore detail")
    sweep = client.get(f"/sweeps/{sweep_id}").json()
    assert sweep["status"] == "held" and sweep["counts"] == {"failed": 3, "held": 22}
    assert (
        "the first 3 runs failed with the same error: RuntimeError: shapes (32x0"
        in (sweep["hold_reason"])
    )
    # A worker given a held run's message leaves it alone.
    assert claim_run(session, ids[3], "w1", 30.0) is None
    session.rollback()

    refused = client.post(f"/sweeps/{sweep_id}/retry")
    assert refused.status_code == 409
    assert f"sweeps retry {sweep_id} --file FILE" in refused.json()["detail"]
    assert "--force" in refused.json()["detail"]

    queue.delete("runs")
    released = client.post(f"/sweeps/{sweep_id}/retry", params={"force": "true"}).json()
    assert released["retried"] == ids and released["enqueued"] == 25
    assert queued_run_ids(queue) == ids
    sweep = client.get(f"/sweeps/{sweep_id}").json()
    assert sweep["status"] == "active" and sweep["hold_reason"] is None
    # Released by a person: the same failures again do not hold it a second time.
    for run_id in ids[:3]:
        _fail(session, run_id, "RuntimeError: shapes (32x1 and 4x2)")
    assert client.get(f"/sweeps/{sweep_id}").json()["counts"]["queued"] == 22


@pytest.mark.parametrize(
    "outcomes",
    [
        ["fail:A 1", "ok", "fail:A 2", "fail:A 3"],  # one run succeeded: the file works
        ["fail:A 1", "fail:B 2", "fail:A 3", "fail:A 4"],  # the first three differ
    ],
)
def test_no_hold_after_a_success_or_unlike_failures(
    client: TestClient, session: Session, outcomes: list[str]
) -> None:
    created = post_yaml(client, GRID).json()
    ids = [r["id"] for r in created["runs"]]
    for run_id, outcome in zip(ids, outcomes, strict=False):
        if outcome == "ok":
            _succeed(session, run_id)
        else:
            _fail(session, run_id, f"RuntimeError: {outcome.removeprefix('fail:')}")
    sweep = client.get(f"/sweeps/{created['id']}").json()
    assert sweep["status"] == "active" and sweep["hold_reason"] is None
    assert "held" not in sweep["counts"]


def test_retry_with_a_file_of_other_runs_is_422(client: TestClient, session: Session) -> None:
    created = post_yaml(client, GRID).json()
    for run_id in [r["id"] for r in created["runs"]][:3]:
        _fail(session, run_id, "RuntimeError: broken")
    other = GRID.replace("a: [1, 2, 3, 4, 5]", "a: [1, 2]")
    response = client.post(f"/sweeps/{created['id']}/retry", json={"yaml": other})
    assert response.status_code == 422
    assert "other runs than sweep" in response.json()["detail"]["message"]
    session.expire_all()
    assert session.get_one(Run, created["runs"][5]["id"]).status is RunStatus.HELD
