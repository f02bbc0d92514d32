"""Cancel (queued now, running via its worker, finished 409) and retry (re-enqueued)."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, Sweep

from .conftest import finish_run, post_yaml, queued_run_ids


def _set_status(session: Session, run_id: int, status: RunStatus) -> None:
    run = session.get(Run, run_id)
    assert run is not None
    run.status = status
    session.commit()


def test_cancel_queued_run_is_immediate(client: TestClient, session: Session) -> None:
    first, second = (r["id"] for r in post_yaml(client).json()["runs"])
    response = client.post(f"/runs/{first}/cancel")
    assert response.status_code == 200
    assert response.json() == {"id": first, "status": "cancelled", "cancel_requested": False}
    assert client.get(f"/runs/{first}").json()["finished_at"] is not None
    assert client.get(f"/runs/{second}").json()["status"] == "queued"


def test_cancel_running_run_asks_its_worker(client: TestClient, session: Session) -> None:
    run_id = post_yaml(client).json()["runs"][0]["id"]
    _set_status(session, run_id, RunStatus.RUNNING)
    response = client.post(f"/runs/{run_id}/cancel")
    assert response.json() == {"id": run_id, "status": "running", "cancel_requested": True}
    session.expire_all()
    assert session.get(Run, run_id).cancel_requested is True


def test_cancel_finished_run_is_409(client: TestClient, session: Session) -> None:
    run_id = post_yaml(client).json()["runs"][0]["id"]
    finish_run(session, run_id)
    response = client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"run {run_id} is already succeeded; there is nothing to cancel"
    )
    assert client.post("/runs/999/cancel").status_code == 404


def test_cancel_sweep_and_retry_requeues(
    client: TestClient, session: Session, queue: redis.Redis
) -> None:
    created = post_yaml(client).json()
    sweep_id = created["id"]
    running, queued = (r["id"] for r in created["runs"])
    _set_status(session, running, RunStatus.RUNNING)
    queue.delete("runs")

    result = client.post(f"/sweeps/{sweep_id}/cancel").json()
    assert result == {"sweep_id": sweep_id, "cancelled": [queued], "cancel_requested": [running]}
    assert client.get(f"/sweeps/{sweep_id}").json()["status"] == "active"  # one still running

    # The worker stops the running one and records it cancelled; the sweep is then finished.
    _set_status(session, running, RunStatus.CANCELLED)
    assert client.post(f"/sweeps/{sweep_id}/cancel").status_code == 409
    assert client.post(f"/sweeps/{sweep_id}/retry").json() == {
        "sweep_id": sweep_id, "retried": [running, queued], "refitted": 0, "enqueued": 2,
        "warnings": [],
    }  # fmt: skip
    assert queued_run_ids(queue) == [running, queued]
    session.expire_all()
    runs = [session.get(Run, running), session.get(Run, queued)]
    assert [r.status for r in runs] == [RunStatus.QUEUED, RunStatus.QUEUED]
    assert all(not r.cancel_requested and r.finished_at is None for r in runs)
    assert all(r.enqueued_at is not None for r in runs)
    assert session.get(Sweep, sweep_id).status.value == "active"


def test_retry_picks_failed_runs_only(
    client: TestClient, session: Session, queue: redis.Redis
) -> None:
    created = post_yaml(client).json()
    failed, succeeded = (r["id"] for r in created["runs"])
    finish_run(session, failed, status=RunStatus.FAILED)
    session.get(Run, failed).error = "boom"
    session.commit()
    finish_run(session, succeeded)
    queue.delete("runs")
    assert client.get(f"/sweeps/{created['id']}").json()["counts"] == {
        "failed": 1, "succeeded": 1,
    }  # fmt: skip
    result = client.post(f"/sweeps/{created['id']}/retry").json()
    assert result["retried"] == [failed] and queued_run_ids(queue) == [failed]
    assert client.get(f"/runs/{failed}").json()["error"] is None
    nothing = client.post(f"/sweeps/{created['id']}/retry").json()
    assert nothing["retried"] == [] and nothing["enqueued"] == 0
    assert client.post("/sweeps/999/retry").status_code == 404
    assert client.post("/sweeps/999/cancel").status_code == 404


def test_runs_linked_to_a_cancelled_run_end_with_it_and_retry_trains_them(
    client: TestClient, session: Session, queue: redis.Redis
) -> None:
    first = post_yaml(client).json()
    second = post_yaml(client).json()  # same configurations, queued in `first`: linked
    assert [r["reused_from_id"] for r in second["runs"]] == [r["id"] for r in first["runs"]]
    queue.delete("runs")
    client.post(f"/sweeps/{first['id']}/cancel")
    detail = client.get(f"/sweeps/{second['id']}").json()
    assert detail["status"] == "finished" and detail["counts"] == {"cancelled": 2}
    assert all("linked to run" in r["error"] for r in detail["runs"])
    retried = client.post(f"/sweeps/{second['id']}/retry").json()
    assert retried["retried"] == [r["id"] for r in second["runs"]]
    assert queued_run_ids(queue) == retried["retried"]  # trained by themselves now
    session.expire_all()
    assert all(session.get_one(Run, i).reused_from_id is None for i in retried["retried"])
