"""The sweep every fault test trains, and the checks every fault test ends with."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.pool import NullPool

BATCH = 16
MAX_INPUTS = 3000  # not a multiple of the batch: the last step ends at 3,008 inputs
VALIDATE_EVERY = 640
TRAIN_LOSS_STRETCH = 1000  # worker/engine/trainer.py: train loss per stretch of >= 1,000 inputs
FINAL_INPUTS = math.ceil(MAX_INPUTS / BATCH) * BATCH


def sweep_yaml(
    seeds: Iterable[int] = (1, 2),
    *,
    sleep: float = 0.03,
    max_inputs: int = MAX_INPUTS,
    name: str = "faults",
    extra_globals: str = "",
    model: str = "nn.Linear(8, 2)",
    step_log: Path | None = None,
) -> str:
    """A sweep of a 18-parameter linear model on generated data, one run per seed.

    Each training step sleeps `sleep` seconds (a transform), so a run takes a few seconds and
    faults land mid-run; it validates (and checkpoints) every 640 inputs. With `step_log`,
    each training step also appends its process id to that file (see `steps_by_process`).
    """
    seed_list = ", ".join(str(s) for s in seeds)
    if step_log is not None:
        extra_globals += (
            "  log_step: |\n    import os\n\n    def log_step():\n"
            f'        with open("{step_log}", "a") as log:\n'
            '            log.write(f"{os.getpid()}\\n")\n\n    log_step\n'
        )
        transform = f"lambda x: (time.sleep({sleep}), log_step(), x)[2]"
    else:
        transform = f"lambda x: (time.sleep({sleep}), x)[1]"
    model_block = "\n".join("  " + line for line in model.strip().splitlines())
    return f"""\
matrix:
  seed: [{seed_list}]
experiment_name: {name}/${{matrix_slug}}
globals:
  time: |
    import time
    time
{extra_globals}
train_set: |
  g = torch.Generator().manual_seed(${{seed}})
  torch.utils.data.TensorDataset(torch.rand(512, 8, generator=g), torch.rand(512, 2, generator=g))
validation_set: |
  g = torch.Generator().manual_seed(1000 + ${{seed}})
  torch.utils.data.TensorDataset(torch.rand(128, 8, generator=g), torch.rand(128, 2, generator=g))
train_input_transforms: |
  [{transform}]
batch_size: {BATCH}
learnrate: 0.01
optimizer: SGD
loss_function: l2
max_inputs: {max_inputs}
num_epochs_between_validations: 1000
num_inputs_between_validations: {VALIDATE_EVERY}
seed: ${{seed}}
model: |
{model_block}
"""


def steps_by_process(step_log: Path) -> dict[int, int]:
    """{pid: training steps it ran}, in the order the processes first trained."""
    counts: dict[int, int] = {}
    for line in step_log.read_text().split():
        counts[int(line)] = counts.get(int(line), 0) + 1
    return counts


def submit(client: httpx.Client, yaml_text: str, *, force: bool = True) -> dict[str, Any]:
    """POST /sweeps; returns the 201 body (sweep id, run ids)."""
    response = client.post(
        "/sweeps",
        params={"force": "true"} if force else None,
        content=yaml_text.encode(),
        headers={"Content-Type": "application/x-yaml"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def run_ids_of(created: dict[str, Any]) -> list[int]:
    return [int(run["id"]) for run in created["runs"]]


def expected_validation_steps(final: int = FINAL_INPUTS) -> list[int]:
    """Every 640 inputs (640 is a multiple of the batch), then once more at the end."""
    steps = list(range(VALIDATE_EVERY, final, VALIDATE_EVERY))
    return [*steps, final]


def expected_train_loss_steps(final: int = FINAL_INPUTS) -> list[int]:
    stretch = math.ceil(TRAIN_LOSS_STRETCH / BATCH) * BATCH
    return list(range(stretch, final + 1, stretch))


def query(db_url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of `sql` on Postgres or SQLite; a list parameter is expanded (`IN :ids`)."""
    statement = text(sql)
    lists = [name for name, value in params.items() if isinstance(value, list | tuple)]
    if lists:
        statement = statement.bindparams(*(bindparam(name, expanding=True) for name in lists))
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(statement, params).all())
    finally:
        engine.dispose()


def run_rows(db_url: str, run_ids: list[int]) -> dict[int, Any]:
    rows = query(
        db_url,
        "SELECT id, status, attempts, inputs_seen, started_at, error, traceback "
        "FROM runs WHERE id IN :ids",
        ids=run_ids,
    )
    return {row.id: row for row in rows}


def metric_steps(db_url: str, run_id: int, key: str) -> list[int]:
    rows = query(
        db_url,
        "SELECT step FROM metrics WHERE run_id = :r AND key = :k ORDER BY step",
        r=run_id,
        k=key,
    )
    return [row.step for row in rows]


def checkpoint_inputs(artifacts: Path | str, run_id: int) -> int | None:
    """Inputs seen at the run's latest checkpoint (worker/tasks.py run_dir), or None.

    `artifacts` is the artifact location: a local folder or an s3:// URL.
    """
    # The test process only reads a checkpoint; torch is heavy, so imported here.
    from shared.artifacts import join_location
    from worker.engine.checkpoint import load_checkpoint

    state = load_checkpoint(join_location(artifacts, "runs", str(run_id)))
    return None if state is None else int(state["progress"]["inputs"])


def assert_sweep_complete(
    db_url: str, run_ids: list[int], *, final: int = FINAL_INPUTS
) -> dict[int, Any]:
    """The end state every scenario requires: all succeeded, no duplicate points, continuous
    step counts, and the final input count = max_inputs rounded up to a batch."""
    rows = run_rows(db_url, run_ids)
    assert {run_id: row.status for run_id, row in rows.items()} == dict.fromkeys(
        run_ids, "succeeded"
    )
    duplicates = query(
        db_url,
        "SELECT run_id, key, step, count(*) AS n FROM metrics WHERE run_id IN :ids "
        "GROUP BY run_id, key, step HAVING count(*) > 1",
        ids=run_ids,
    )
    assert duplicates == []
    for run_id in run_ids:
        assert rows[run_id].inputs_seen == final, run_id
        validation = expected_validation_steps(final)
        train_loss = expected_train_loss_steps(final)
        expected = dict.fromkeys(("validation_loss", "model_params", "train_seconds"), validation)
        expected |= {"throughput": validation, "train_loss": train_loss, "learnrate": train_loss}
        for key, steps in expected.items():
            stored = metric_steps(db_url, run_id, key)
            assert stored == steps, f"run {run_id} {key}: stored steps {stored}, expected {steps}"
        latest = dict(
            (row.key, row.step)
            for row in query(
                db_url, "SELECT key, step FROM latest_metrics WHERE run_id = :r", r=run_id
            )
        )
        assert latest["validation_loss"] == final, run_id
    return rows
