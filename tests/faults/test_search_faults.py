"""A search (`search: random`) survives its worker killed and its API restarted mid-way.

The sampler keeps no state of its own: each time trials are asked it is rebuilt from the
runs in the database, so the search goes on where it was, and since a trial is a run whose
number is unique in its sweep, none is started or counted twice.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    assert_sweep_complete,
    checkpoint_inputs,
    query,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TRIALS = 4
MAX_INPUTS = 1_500
FINAL = 1_504  # a batch of 16 past max_inputs


def search_yaml() -> str:
    text = sweep_yaml(seeds=(1,), max_inputs=MAX_INPUTS, name="search")
    text = text.replace(
        "matrix:\n  seed: [1]\n",
        f"search:\n  method: random\n  trials: {TRIALS}\n  metric: validation_loss\n"
        "  in_flight: 2\n  seed: 5\n"
        "matrix:\n  seed: [1, 2, 3]\n  lr: {low: 1.0e-3, high: 0.1, log: true}\n",
    )
    return text.replace("learnrate: 0.01", "learnrate: ${lr}")


def search_state(client: httpx.Client, sweep_id: int) -> dict[str, Any]:
    return client.get(f"/sweeps/{sweep_id}").raise_for_status().json()  # type: ignore[no-any-return]


def wait_finished(stack: Stack, sweep_id: int) -> dict[str, Any]:
    with stack.client() as client:
        return wait_until(  # type: ignore[no-any-return]
            lambda: (s := search_state(client, sweep_id))["status"] == "finished" and s,
            timeout=180, interval=0.5, what="the search to finish", diagnostics=stack.logs,
        )  # fmt: skip


def assert_each_trial_once(stack: Stack, sweep: dict[str, Any]) -> list[int]:
    runs = sweep["runs"]
    assert [r["matrix_id"] for r in runs] == [str(n) for n in range(1, TRIALS + 1)]
    assert sweep["search"]["started"] == TRIALS
    ids = [r["id"] for r in runs]
    assert_sweep_complete(stack.db_url, ids, final=FINAL)
    rows = query(stack.db_url, "SELECT count(*) AS n FROM runs WHERE sweep_id = :s", s=sweep["id"])
    assert rows[0].n == TRIALS
    return ids


def test_worker_killed_mid_search_the_search_goes_on(stack: Stack) -> None:
    stack.api()
    first = stack.worker("worker-a")
    with stack.client() as client:
        created = submit(client, search_yaml())
    sweep_id = created["id"]
    artifacts = stack.tmp / "artifacts"
    # Killed while the first trial trains, past a checkpoint.
    first_id = created["runs"][0]["id"]
    wait_until(
        lambda: checkpoint_inputs(artifacts, first_id), timeout=90, interval=0.1,
        what="a checkpoint of the first trial", diagnostics=stack.logs,
    )  # fmt: skip
    first.kill()
    stack.worker("worker-b")
    sweep = wait_finished(stack, sweep_id)
    ids = assert_each_trial_once(stack, sweep)
    attempts = {r.id: r.attempts for r in query(
        stack.db_url, "SELECT id, attempts FROM runs WHERE sweep_id = :s", s=sweep_id)}  # fmt: skip
    assert attempts[first_id] == 2  # resumed by worker-b, not asked again as a new trial
    assert all(attempts[i] == 1 for i in ids if i != first_id)


def test_api_restarted_mid_search_the_search_goes_on(stack: Stack) -> None:
    api = stack.api()
    stack.worker()
    with stack.client() as client:
        created = submit(client, search_yaml())
    sweep_id = created["id"]

    def one_trial_done() -> bool:
        rows = query(stack.db_url, "SELECT status FROM runs WHERE sweep_id = :s", s=sweep_id)
        return any(row.status == "succeeded" for row in rows) and len(rows) < TRIALS + 1

    wait_until(one_trial_done, timeout=90, interval=0.2, what="a first trial to succeed",
               diagnostics=stack.logs)  # fmt: skip
    api.kill()
    stack.api("api-2")
    sweep = wait_finished(stack, sweep_id)
    assert_each_trial_once(stack, sweep)
    assert [p["trial"] for p in sweep["search"]["best_so_far"]] == list(range(1, TRIALS + 1))
