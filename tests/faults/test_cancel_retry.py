"""Fault 7: a run is cancelled mid-run, then retried.

It stops within a few training steps (the worker's heartbeat sees the request; the engine polls
every 10 steps) and is `cancelled`; POST /sweeps/{id}/retry queues it again and it resumes
from its checkpoint (it trains only the steps after it: each step logs its process id) and
succeeds.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    BATCH,
    FINAL_INPUTS,
    assert_sweep_complete,
    checkpoint_inputs,
    metric_steps,
    run_ids_of,
    run_rows,
    steps_by_process,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
STEP_SECONDS = 0.05


def test_cancel_mid_run_then_retry_resumes(stack: Stack) -> None:
    stack.api()
    stack.worker()
    artifacts = stack.tmp / "artifacts"
    step_log = stack.tmp / "steps.log"
    with stack.client() as client:
        yaml_text = sweep_yaml(seeds=(1,), sleep=STEP_SECONDS, step_log=step_log)
        created = submit(client, yaml_text)
        (run_id,) = run_ids_of(created)
        wait_until(
            lambda: checkpoint_inputs(artifacts, run_id), timeout=90,
            what="the run mid-way", diagnostics=stack.logs,
        )  # fmt: skip

        asked = time.monotonic()
        response = client.post(f"/runs/{run_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["cancel_requested"] is True
        wait_for_runs(stack.db_url, [run_id], "cancelled", timeout=30, diagnostics=stack.logs)
        took = time.monotonic() - asked
        # A heartbeat (0.3 s) plus at most 10 steps of 0.05 s, with slack for a loaded machine.
        assert took < 5.0, f"cancel took {took:.1f}s"
        assert metric_steps(stack.db_url, run_id, "validation_loss")[-1] < FINAL_INPUTS

        resumed_at = checkpoint_inputs(artifacts, run_id)
        assert resumed_at is not None and resumed_at < FINAL_INPUTS

        retried = client.post(f"/sweeps/{created['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["retried"] == [run_id]
        wait_for_runs(stack.db_url, [run_id], timeout=120, diagnostics=stack.logs)

    rows = assert_sweep_complete(stack.db_url, [run_id])
    assert rows[run_id].attempts == 2
    steps = steps_by_process(step_log)
    assert len(steps) == 2
    assert list(steps.values())[-1] == (FINAL_INPUTS - resumed_at) // BATCH
    assert run_rows(stack.db_url, [run_id])[run_id].error is None
