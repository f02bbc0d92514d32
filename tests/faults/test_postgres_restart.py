"""Fault 4: Postgres restarts mid-run.

While it is down the worker keeps training and keeps its metric points in memory; the API
answers 503 with a sentence saying so (and /healthz says which dependency is down). When
Postgres is back, both recover by themselves: every point lands and the run trains once.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import Stack
from tests.faults.helpers import (
    FINAL_INPUTS,
    assert_sweep_complete,
    checkpoint_inputs,
    metric_steps,
    run_ids_of,
    submit,
    sweep_yaml,
)
from tests.support.stack import wait_for_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
OUTAGE_SECONDS = 4.0


def test_postgres_restart_mid_run_loses_nothing(stack: Stack) -> None:
    # The lease must outlast the outage, or the run would (correctly) be handed to another
    # attempt; this test is about riding the outage out.
    stack.settings["lease_seconds"] = 30
    api = stack.api()
    worker = stack.worker()
    artifacts = stack.tmp / "artifacts"
    with stack.client() as client:
        (run_id,) = run_ids_of(submit(client, sweep_yaml(seeds=(1,), sleep=0.05)))
        wait_until(
            lambda: checkpoint_inputs(artifacts, run_id), timeout=90,
            what="the run mid-way", diagnostics=stack.logs,
        )  # fmt: skip

        stack.pg.stop()
        down_at = time.monotonic()
        response = client.get(f"/runs/{run_id}")
        assert response.status_code == 503
        assert "database is unavailable" in response.json()["detail"]
        assert response.headers["Retry-After"]
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["database"]["ok"] is False
        assert health.json()["broker"]["ok"] is True
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        stack.pg.start()

        def api_back() -> bool:
            try:
                return client.get(f"/runs/{run_id}").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(api_back, timeout=30, what="the API to recover", diagnostics=api.log_tail)
        wait_for_runs(stack.db_url, [run_id], timeout=120, diagnostics=stack.logs)
        assert client.get("/healthz").status_code == 200

    rows = assert_sweep_complete(stack.db_url, [run_id])
    assert rows[run_id].attempts == 1
    # The outage really hit the worker mid-run: it kept points while the database was gone.
    assert "database unreachable, keeping points" in worker.log()
    assert metric_steps(stack.db_url, run_id, "validation_loss")[-1] == FINAL_INPUTS
