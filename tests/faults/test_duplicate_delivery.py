"""Fault 2: the same run is delivered twice, to two workers at once: it trains exactly once.

The duplicate message is sent right behind the API's own, so both workers race to claim the
run; the conditional UPDATE lets one win and the other acknowledges its copy without training.
"""

from __future__ import annotations

import re

import pytest

from shared.queue import enqueue_run
from tests.faults.conftest import Stack
from tests.faults.helpers import assert_sweep_complete, run_ids_of, submit, sweep_yaml
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_duplicate_delivery_trains_once(stack: Stack) -> None:
    stack.api()
    workers = [stack.worker("worker-a"), stack.worker("worker-b")]
    with stack.client() as client:
        (run_id,) = run_ids_of(submit(client, sweep_yaml(seeds=(1,))))
    enqueue_run(run_id, broker_url=stack.redis.url)

    received = re.compile(r"Task runs\.train\[[0-9a-f-]+\] received")
    wait_until(
        lambda: all(received.search(w.log()) for w in workers),
        timeout=60, what="each worker to receive a copy", diagnostics=stack.logs,
    )  # fmt: skip
    wait_for_runs(stack.db_url, [run_id], timeout=120, diagnostics=stack.logs)

    rows = assert_sweep_complete(stack.db_url, [run_id])
    assert rows[run_id].attempts == 1
    # The task's return value, as the Celery worker logs it: "succeeded", or "skipped" for a
    # run it could not claim.
    outcome = re.compile(r"Task runs\.train\[[0-9a-f-]+\] succeeded in [0-9.]+s: '(\w+)'")
    outcomes = sorted(m for w in workers for m in outcome.findall(w.log()))
    assert outcomes == ["skipped", "succeeded"]
