"""Fault 10: the host training a run dies; another host resumes it from the object store.

Two real workers with separate local disks share one database, one broker and one S3 bucket
(moto's server on loopback). The worker that trains is killed with SIGKILL (its whole process
group, as a dead host); the other takes the run back once its lease expires and continues from
the checkpoint in the bucket, so it trains again less than one validation interval.
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
    steps_by_process,
    submit,
    sweep_yaml,
)
from tests.faults.s3 import S3Server
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_run_resumes_on_another_host_from_the_object_store(stack: Stack, s3: S3Server) -> None:
    location = s3.url("sweeps")
    shared = {"SWEEPS_ARTIFACT_URL": location, **s3.env()}
    disks = {name: stack.tmp / f"disk-{name}" for name in ("a", "b")}
    workers = {
        name: stack.worker(f"host-{name}", SWEEPS_ARTIFACT_DIR=str(disk), **shared)
        for name, disk in disks.items()
    }
    stack.api()
    step_log = stack.tmp / "steps.log"
    with stack.client() as client:
        (run_id,) = run_ids_of(submit(client, sweep_yaml(seeds=(1,), step_log=step_log)))

    wait_until(
        lambda: checkpoint_inputs(location, run_id), timeout=120, interval=0.1,
        what="a checkpoint in the bucket", diagnostics=stack.logs,
    )  # fmt: skip
    (trainer_pid,) = steps_by_process(step_log)
    (training,) = [n for n, w in workers.items() if trainer_pid in w.descendants()]
    workers[training].kill()
    resumed_at = checkpoint_inputs(location, run_id)
    assert resumed_at is not None and VALIDATE_EVERY <= resumed_at < FINAL_INPUTS

    wait_for_runs(stack.db_url, [run_id], timeout=150, diagnostics=stack.logs)
    # Every point once, with the final input count.
    rows = assert_sweep_complete(stack.db_url, [run_id])
    assert rows[run_id].attempts == 2
    (other,) = set(workers) - {training}
    assert f"run {run_id}: succeeded" in workers[other].log()

    steps = steps_by_process(step_log)
    assert len(steps) == 2, steps
    # The survivor trained exactly what the stored checkpoint lacked...
    assert list(steps.values())[-1] == (FINAL_INPUTS - resumed_at) // BATCH
    # ...so the inputs trained twice are those the dead host trained after its checkpoint.
    trained_again = sum(steps.values()) * BATCH - FINAL_INPUTS
    assert 0 <= trained_again < VALIDATE_EVERY
    print(f"killed host-{training} at {resumed_at} inputs; {trained_again} inputs trained again")
    # Nothing went through either host's own disk.
    assert not any((disk / "runs").exists() for disk in disks.values())
