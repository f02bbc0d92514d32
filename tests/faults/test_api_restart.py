"""Fault 5: the API process dies (SIGKILL) and is started again while runs train.

The API holds no state the runs need: training carries on, nothing is lost, nothing re-runs,
and the new API process serves the same sweep and curves.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    assert_sweep_complete,
    checkpoint_inputs,
    expected_validation_steps,
    run_ids_of,
    run_rows,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_api_restart_while_runs_train(stack: Stack) -> None:
    api = stack.api()
    stack.worker(runs_per_gpu=2)
    artifacts = stack.tmp / "artifacts"
    with stack.client() as client:
        created = submit(client, sweep_yaml(seeds=(1, 2)))
    run_ids = run_ids_of(created)
    wait_until(
        lambda: all(checkpoint_inputs(artifacts, r) for r in run_ids), timeout=90,
        what="both runs mid-way", diagnostics=stack.logs,
    )  # fmt: skip
    api.kill()
    assert set(r.status for r in run_rows(stack.db_url, run_ids).values()) == {"running"}
    stack.api("api-2")

    wait_for_runs(stack.db_url, run_ids, timeout=120, diagnostics=stack.logs)
    rows = assert_sweep_complete(stack.db_url, run_ids)
    assert [rows[r].attempts for r in run_ids] == [1, 1]
    with stack.client() as client:
        sweep = client.get(f"/sweeps/{created['id']}")
        assert sweep.status_code == 200
        assert {run["status"] for run in sweep.json()["runs"]} == {"succeeded"}
        for run_id in run_ids:
            series = client.get(f"/runs/{run_id}/metrics", params={"keys": "validation_loss"})
            assert series.status_code == 200
            steps = [step for step, _ in series.json()["series"]["validation_loss"]]
            assert steps == expected_validation_steps()
