"""The table options on GET /sweeps/{id}/table and /compare: a 2 x 3 trials grid averaged."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import RunStatus

from .conftest import TINY_YAML, finish_run, post_yaml

GRID_YAML = TINY_YAML.replace("lr: [0.1, 0.01]", "lr: [0.1, 0.01]\n  trial: [1, 2, 3]")
# (lr, trial) in matrix order -> (validation loss, train loss); see tests/shared for the sums.
LOSSES = [0.30, 0.20, 0.40, 0.50, 0.60, 0.70]


def _grid(
    client: TestClient, session: Session, *, fail_last: bool = False
) -> tuple[int, list[int]]:
    created = post_yaml(client, GRID_YAML).json()
    ids = [r["id"] for r in created["runs"]]
    assert len(ids) == 6
    for run_id, loss in zip(ids, LOSSES, strict=True):
        failed = fail_last and run_id == ids[-1]
        finish_run(
            session, run_id,
            status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
            latest={"validation_loss": (64, loss), "train_loss": (64, loss * 2)},
        )  # fmt: skip
    return created["id"], ids


def test_averaged_json_carries_mean_std_and_n(client: TestClient, session: Session) -> None:
    sweep_id, ids = _grid(client, session, fail_last=True)
    params = {"average": "trial", "average_std": ["validation_loss", "train_loss"],
              "include": "train_loss", "sort": "-validation loss"}  # fmt: skip
    response = client.get(f"/sweeps/{sweep_id}/table", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    first, second = body["rows"]  # by mean loss, descending: lr 0.01 first
    assert first["params"] == {"lr": 0.01} and first["n"] == 2
    assert first["left_out"] == {"failed": [ids[-1]]}
    loss = first["stats"]["validation loss (64 steps)"]
    assert loss == {"mean": pytest.approx(0.55), "std": pytest.approx(0.0707107), "n": 2}
    assert second["stats"]["train_loss"]["mean"] == pytest.approx(0.60)
    assert second["stats"]["train_loss"]["std"] == pytest.approx(0.2)
    assert body["options"]["sort"] == ["-validation loss"]

    markdown = client.get(f"/sweeps/{sweep_id}/table", params={**params, "format": "md"}).text
    assert "| num trials |" in markdown and "0.30000 ± 0.10000" in markdown
    assert f"1 failed (run {ids[-1]})" in markdown
    text = client.get("/compare", params={**params, "sweeps": sweep_id, "format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert float(rows[1]["validation loss (64 steps) std"]) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"include": "no_such_metric"}, "cannot include 'no_such_metric'"),
        ({"exclude": "nope"}, "cannot exclude 'nope'"),
        ({"sort": ["lr", "-nope"]}, "cannot sort by 'nope'"),
        ({"average": "seed"}, "cannot average over 'seed': it is not a matrix key"),
        ({"average": "trial", "average_std": "status"}, "std of 'status'"),
    ],
)
def test_bad_options_are_a_422_naming_the_value(
    client: TestClient, session: Session, params: dict, fragment: str
) -> None:
    sweep_id, _ = _grid(client, session)
    response = client.get(f"/sweeps/{sweep_id}/table", params=params)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
