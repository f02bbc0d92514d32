"""Fault 7: a run is cancelled mid-run, then retried.

It stops within a few training steps (the worker's heartbeat sees the request; the engine polls
every 10 steps) and is `cancelled`; POST /sweeps/{id}/retry queues it again and it resumes
from its checkpoint (the points up to it are never rewritten) and succeeds.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    FINAL_INPUTS,
    assert_sweep_complete,
    checkpoint_inputs,
    metric_steps,
    metric_versions,
    run_ids_of,
    run_rows,
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
    with stack.client() as client:
        created = submit(client, sweep_yaml(seeds=(1,), sleep=STEP_SECONDS))
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
        written = metric_versions(stack.db_url, run_id)

        retried = client.post(f"/sweeps/{created['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["retried"] == [run_id]
        wait_for_runs(stack.db_url, [run_id], timeout=120, diagnostics=stack.logs)

    rows = assert_sweep_complete(stack.db_url, [run_id])
    assert rows[run_id].attempts == 2
    now = metric_versions(stack.db_url, run_id)
    upto_checkpoint = {p: v for p, v in written.items() if p[1] <= resumed_at}
    assert upto_checkpoint
    assert {p: now[p] for p in upto_checkpoint} == upto_checkpoint
    assert run_rows(stack.db_url, [run_id])[run_id].error is None
