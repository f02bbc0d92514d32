"""The API process never runs submitted code: code that would write files writes none."""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import Run

from .conftest import queued_run_ids


def hostile_sweep(target: Path, *, filter_writes: bool) -> str:
    """A valid sweep whose every code block would create `target/<place>` if it ran."""

    def touch(place: str) -> str:
        return f"open({str(target / place)!r}, 'w').write('ran')"

    def shell(place: str) -> str:
        return f"__import__('os').system('touch {target / (place + '.sh')}')"

    # A filter may only call len/isinstance/...: a writing one must be refused, not run.
    filter_expr = touch("filter") if filter_writes else "${width} > 0"
    return f"""\
matrix:
  width: [4, 8]
  $filter: "{filter_expr}"
experiment_name: hostile/${{matrix_slug}}
globals:
  WRITE: {touch("globals")}
  SHELL: {shell("globals")}
model: |
  {touch("model")}
  {shell("model")}
  nn.Linear(${{width}}, 2)
train_set: |
  {touch("train_set")}
  torch.utils.data.TensorDataset(torch.randn(8, ${{width}}), torch.randn(8, 2))
validation_set: |
  {touch("validation_set")}
  torch.utils.data.TensorDataset(torch.randn(8, ${{width}}), torch.randn(8, 2))
train_input_transforms: |
  [
      {touch("transforms")} and (lambda x: x),
  ]
loss_function: |
  {touch("loss")}
  F.mse_loss
batch_size: 4
learnrate: 0.1
optimizer: SGD
max_inputs: 64
"""


def _written(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir())


def test_preview_and_submit_run_none_of_the_code(
    client: TestClient, session: Session, queue: redis.Redis, tmp_path: Path
) -> None:
    target = tmp_path / "evidence"
    target.mkdir()
    text = hostile_sweep(target, filter_writes=False)
    headers = {"Content-Type": "application/x-yaml"}

    preview = client.post("/sweeps/preview", content=text, headers=headers)
    assert preview.status_code == 200, preview.text
    assert [r["slug"] for r in preview.json()["runs"]] == ["width:4", "width:8"]
    assert _written(target) == []

    created = client.post("/sweeps", content=text, headers=headers)
    assert created.status_code == 201, created.text
    run_ids = [r["id"] for r in created.json()["runs"]]
    assert queued_run_ids(queue) == run_ids  # only a worker would ever run it
    as_json = client.post("/sweeps?force=true", json={"yaml": text})
    assert as_json.status_code == 201
    for run_id in run_ids:
        assert client.get(f"/runs/{run_id}").status_code == 200
    assert client.get(f"/sweeps/{created.json()['id']}/table").status_code == 200
    assert _written(target) == []
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Run)) == 4


def test_the_hostile_code_does_write_when_run(tmp_path: Path) -> None:
    """The control: the same lines, executed, do leave their files (so silence above means
    the API never ran them, not that they were harmless)."""
    import yaml

    config = yaml.safe_load(hostile_sweep(tmp_path, filter_writes=True).replace("${width}", "4"))
    exec(config["globals"]["WRITE"])  # noqa: S102 - the test's own control, in tmp_path
    exec(config["model"].splitlines()[0])  # noqa: S102
    exec(config["matrix"]["$filter"])  # noqa: S102
    assert _written(tmp_path) == ["filter", "globals", "model"]


def test_filter_that_would_write_is_refused_and_writes_nothing(
    client: TestClient, session: Session, queue: redis.Redis, tmp_path: Path
) -> None:
    target = tmp_path / "evidence"
    target.mkdir()
    text = hostile_sweep(target, filter_writes=True)
    for path in ("/sweeps/preview", "/sweeps"):
        response = client.post(path, content=text, headers={"Content-Type": "text/plain"})
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert "call to 'open(" in detail["message"]
        assert "is not allowed in $filter" in detail["message"]
        assert detail["key"] == "$filter"
    assert _written(target) == []
    assert queue.llen("runs") == 0
    assert session.scalar(select(func.count()).select_from(Run)) == 0
