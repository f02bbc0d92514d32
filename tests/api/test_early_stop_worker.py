"""early_stop through the API and a real worker: a hopeless run ends pruned, retry finishes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run
from shared.db.pruning import PRUNED_AT_KEY
from tests.api.conftest import post_yaml
from tests.support.db import sweep_text
from tests.support.stack import stack_env, start_worker, wait_for_runs

pytestmark = pytest.mark.slow


def test_hopeless_run_is_pruned_and_retry_trains_it_to_the_end(
    client: TestClient, db_url: str, broker_url: str, tmp_path: Path, session: Session
) -> None:
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        heartbeat_seconds=0.5, metrics_flush_seconds=0.5,
    )  # fmt: skip
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        created = post_yaml(client, sweep_text("asha.yaml"))
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        good, hopeless = (r["id"] for r in created.json()["runs"])
        # One worker trains them in turn: the good run reaches each rung first and goes on;
        # the hopeless one is behind it at the first rung (1,024 inputs) and is pruned there.
        wait_for_runs(db_url, [good, hopeless], {"succeeded", "pruned"}, timeout=120,
                      diagnostics=worker.log_tail)  # fmt: skip
        runs = {r["id"]: r for r in client.get(f"/sweeps/{sweep_id}").json()["runs"]}
        assert (runs[good]["status"], runs[hopeless]["status"]) == ("succeeded", "pruned")
        assert runs[good]["inputs_seen"] == 16_384
        # Stopped at the engine's first poll after the rung's checkpoint (10 steps of 32).
        assert 1_024 <= runs[hopeless]["inputs_seen"] <= 1_024 + 10 * 32
        table = client.get(f"/sweeps/{sweep_id}/table", params={"format": "json"}).json()
        assert {row["run_id"]: row["status"] for row in table["rows"]} == {
            good: "succeeded", hopeless: "pruned",
        }  # fmt: skip
        detail = client.get(f"/runs/{hopeless}").json()
        assert "pruned at the rung of 1,024 inputs" in detail["error"]
        curve = client.get(f"/runs/{hopeless}/metrics", params={"keys": "validation_loss"})
        steps = [p[0] for p in curve.json()["series"]["validation_loss"]]
        assert steps == [512, 1_024]  # the curve is kept

        retried = client.post(f"/sweeps/{sweep_id}/retry").json()
        assert retried["retried"] == [hopeless]
        wait_for_runs(db_url, [hopeless], timeout=120, diagnostics=worker.log_tail)
        log = worker.log()
    session.expire_all()
    run = session.get_one(Run, hopeless)
    assert run.inputs_seen == 16_384 and run.error is None
    assert run.attempts == 2
    steps = session.scalars(
        select(Metric.step)
        .where(Metric.run_id == hopeless, Metric.key == "validation_loss")
        .order_by(Metric.step)
    ).all()
    # Resumed from the rung's checkpoint: every validation once, up to the full budget.
    assert list(steps) == list(range(512, 16_385, 512))
    marks = session.scalars(
        select(Metric.step).where(Metric.run_id == hopeless, Metric.key == PRUNED_AT_KEY)
    ).all()
    assert list(marks) == [1_024]
    assert log.count("pruned at the rung") == 1
