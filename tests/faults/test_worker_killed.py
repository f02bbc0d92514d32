"""Fault 1: a worker host dies (SIGKILL to the whole process group) mid-run.

The run is taken back by the reconciler of a new worker once its lease expires, and resumes
from its last checkpoint: each training step appends its process id to a file, so the test
counts the steps each attempt trained; the second trains only what the checkpoint lacked.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    BATCH,
    FINAL_INPUTS,
    VALIDATE_EVERY,
    assert_sweep_complete,
    checkpoint_inputs,
    run_ids_of,
    run_rows,
    steps_by_process,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_killed_worker_run_resumes_from_checkpoint_on_another_worker(stack: Stack) -> None:
    stack.api()
    step_log = stack.tmp / "steps.log"
    first = stack.worker("worker-a")
    artifacts = stack.tmp / "artifacts"
    with stack.client() as client:
        (run_id,) = run_ids_of(submit(client, sweep_yaml(seeds=(1,), step_log=step_log)))

    # Mid-way: a checkpoint written, training not finished.
    wait_until(
        lambda: checkpoint_inputs(artifacts, run_id), timeout=90, interval=0.1,
        what="a checkpoint", diagnostics=stack.logs,
    )  # fmt: skip
    first.kill()

    before = run_rows(stack.db_url, [run_id])[run_id]
    assert before.status == "running"  # its worker is gone but its lease still holds
    resumed_at = checkpoint_inputs(artifacts, run_id)
    assert resumed_at is not None and VALIDATE_EVERY <= resumed_at < FINAL_INPUTS
    trained_before = sum(steps_by_process(step_log).values())
    assert trained_before >= resumed_at // BATCH

    stack.worker("worker-b")
    wait_for_runs(stack.db_url, [run_id], timeout=120, diagnostics=stack.logs)

    after = assert_sweep_complete(stack.db_url, [run_id])[run_id]
    assert after.attempts == 2
    assert after.started_at > before.started_at
    # Resumed, not restarted: the new process trained exactly the steps after the checkpoint.
    steps = steps_by_process(step_log)
    assert len(steps) == 2
    assert list(steps.values())[-1] == (FINAL_INPUTS - resumed_at) // BATCH


def test_killed_worker_loses_no_points_it_had_not_stored_yet(stack: Stack) -> None:
    """The kill lands after a checkpoint whose points the worker had not stored yet.

    A checkpoint is written at once, but its points reach Postgres a flush later; a worker
    killed in between must not take them with it, since the resumed attempt starts after
    them. Stopping Postgres first widens that window from milliseconds to seconds, so the
    test hits it every time: the worker writes a checkpoint while the database is down, dies,
    and a new worker resumes once it is back.
    """
    step_log = stack.tmp / "steps.log"
    first = stack.worker("worker-a")
    stack.api()
    artifacts = stack.tmp / "artifacts"
    with stack.client() as client:
        (run_id,) = run_ids_of(submit(client, sweep_yaml(seeds=(1,), step_log=step_log)))
    stored = wait_until(
        lambda: checkpoint_inputs(artifacts, run_id), timeout=90, interval=0.05,
        what="a first checkpoint", diagnostics=stack.logs,
    )  # fmt: skip
    stack.pg.stop()
    unstored = wait_until(
        lambda: (c := checkpoint_inputs(artifacts, run_id)) and c > stored and c, timeout=30,
        interval=0.05, what="a checkpoint written while the database is down",
    )  # fmt: skip
    first.kill()
    assert unstored < FINAL_INPUTS
    stack.pg.start()

    stack.worker("worker-b")
    wait_for_runs(stack.db_url, [run_id], timeout=120, diagnostics=stack.logs)
    rows = assert_sweep_complete(stack.db_url, [run_id])
    assert rows[run_id].attempts == 2
    # The second attempt trained only what the checkpoint had not: it resumed at `unstored`.
    assert list(steps_by_process(step_log).values())[-1] == (FINAL_INPUTS - unstored) // BATCH
