"""Fault 3: Redis restarts mid-sweep and comes back empty (it keeps nothing on disk).

The run that was training carries on (its lease is in Postgres); the queued run's message is
gone, and the reconciler, finding it queued past the grace period with no message in Redis,
sends it again. The sweep completes with every run trained once.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    assert_sweep_complete,
    checkpoint_inputs,
    run_ids_of,
    run_rows,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_redis_restart_loses_queue_and_reconciler_requeues(stack: Stack) -> None:
    stack.api()
    worker = stack.worker()  # one run at a time: the second waits in Redis
    artifacts = stack.tmp / "artifacts"
    with stack.client() as client:
        first, second = run_ids_of(submit(client, sweep_yaml(seeds=(1, 2))))

    wait_until(
        lambda: checkpoint_inputs(artifacts, first), timeout=90,
        what="the first run mid-way", diagnostics=stack.logs,
    )  # fmt: skip
    redis = stack.redis.client()
    assert redis.llen("runs") == 1  # the second run's message, waiting
    old_server = redis.info("server")["run_id"]
    redis.close()
    stack.redis.kill()
    stack.redis.start()
    redis = stack.redis.client()
    # A new server that kept nothing: the message is gone. (Its keyspace is not checked:
    # the worker reconnects at once and may already have written its own keys.)
    assert redis.info("server")["run_id"] != old_server
    assert not list(stack.redis.workdir.glob("*.rdb")) and not list(
        stack.redis.workdir.glob("appendonly*")
    )
    redis.close()
    assert run_rows(stack.db_url, [second])[second].status == "queued"

    wait_for_runs(stack.db_url, [first, second], timeout=120, diagnostics=stack.logs)
    rows = assert_sweep_complete(stack.db_url, [first, second])
    assert [rows[first].attempts, rows[second].attempts] == [1, 1]
    assert f"reenqueued_lost=[{second}]" in worker.log()
