"""Worker-side queries: heartbeat, metrics upsert, outcome, and the reconciler's sweeps."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.metric_writes import upsert_metrics
from shared.db.models import LatestMetric, Metric, Run, RunStatus, Sweep, SweepStatus, utcnow
from shared.domain.runs import (
    claim_run,
    expire_leases,
    finish_run,
    mark_enqueued,
    record_progress,
    record_provenance,
    renew_lease,
    stale_queued_runs,
)
from shared.domain.sweeps import update_sweep_status
from tests.worker.conftest import MakeRuns


def _claimed(session: Session, make_runs: MakeRuns, n: int = 1, owner: str = "w1") -> list[int]:
    ids = make_runs(n)
    for run_id in ids:
        assert claim_run(session, run_id, owner, 60) is not None
    session.commit()
    return ids


def _run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id, populate_existing=True)
    assert run is not None
    return run


def _series(session: Session, run_id: int) -> list[tuple[str, int, float]]:
    rows = session.execute(
        select(Metric.key, Metric.step, Metric.value)
        .where(Metric.run_id == run_id)
        .order_by(Metric.key, Metric.step)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_renew_lease_extends_and_reports_cancel(session: Session, make_runs: MakeRuns) -> None:
    (run_id,) = _claimed(session, make_runs)
    before = _run(session, run_id).lease_expires_at
    assert before is not None
    lease = renew_lease(session, run_id, "w1", 600)
    session.commit()
    assert (lease.owned, lease.cancel_requested, lease.should_stop) == (True, False, False)
    after = _run(session, run_id).lease_expires_at
    assert after is not None and after > before + timedelta(seconds=500)

    session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
    lease = renew_lease(session, run_id, "w1", 600)
    assert (lease.owned, lease.cancel_requested, lease.should_stop) == (True, True, True)
    lease = renew_lease(session, run_id, "intruder", 600)
    assert (lease.owned, lease.should_stop) == (False, True)


def test_upsert_metrics_is_idempotent_and_latest_moves_forward(
    session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = _claimed(session, make_runs)
    points = [("train_loss", step, 1.0 / step) for step in (64, 128, 192)]
    assert upsert_metrics(session, run_id, points + [("accuracy_argmax", 192, 0.5)]) == 4
    session.commit()
    # A retried flush and a resumed run re-send points: no duplicates, values overwritten.
    upsert_metrics(session, run_id, [("train_loss", 128, 9.0), ("train_loss", 128, 0.25)])
    # An older point arriving late must not move latest_metrics backwards.
    upsert_metrics(session, run_id, [("accuracy_argmax", 64, 0.1)])
    session.commit()
    assert _series(session, run_id) == [
        ("accuracy_argmax", 64, 0.1),
        ("accuracy_argmax", 192, 0.5),
        ("train_loss", 64, 1 / 64),
        ("train_loss", 128, 0.25),
        ("train_loss", 192, 1 / 192),
    ]
    latest = dict(
        session.execute(
            select(LatestMetric.key, LatestMetric.value).where(LatestMetric.run_id == run_id)
        ).all()
    )
    assert latest == {"accuracy_argmax": 0.5, "train_loss": 1 / 192}
    assert upsert_metrics(session, run_id, []) == 0


def test_upsert_metrics_handles_more_rows_than_one_statement(
    session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = _claimed(session, make_runs)
    points = [(f"k{i % 3}", i, float(i)) for i in range(5_001)]
    assert upsert_metrics(session, run_id, points) == 5_001
    session.commit()
    count = session.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == run_id))
    assert count == 5_001
    latest = dict(
        session.execute(
            select(LatestMetric.key, LatestMetric.step).where(LatestMetric.run_id == run_id)
        ).all()
    )
    assert latest == {"k0": 4_998, "k1": 4_999, "k2": 5_000}


def test_upsert_metrics_throughput(session: Session, make_runs: MakeRuns) -> None:
    """Issue 6 asks for >20,000 points/s into Postgres; a loose floor here keeps CI stable."""
    (run_id,) = _claimed(session, make_runs)
    batches = [[("train_loss", b * 1_000 + i, 0.5) for i in range(1_000)] for b in range(20)]
    start = time.perf_counter()
    for batch in batches:
        upsert_metrics(session, run_id, batch)
        session.commit()
    rate = 20_000 / (time.perf_counter() - start)
    print(f"upsert_metrics: {rate:,.0f} points/s on {session.get_bind().dialect.name}")
    assert rate > 5_000


def test_progress_and_provenance_need_the_lease(session: Session, make_runs: MakeRuns) -> None:
    (run_id,) = _claimed(session, make_runs)
    info = {"device": "cuda", "device_name": "NVIDIA H100", "host": "box", "seed": 1}
    assert record_provenance(session, run_id, "w1", info) is True
    assert record_progress(session, run_id, "w1", 640) is True
    assert record_progress(session, run_id, "w2", 9_999) is False
    session.commit()
    run = _run(session, run_id)
    assert (run.device, run.worker_host, run.inputs_seen) == ("cuda (NVIDIA H100)", "box", 640)
    assert run.provenance == info


def test_finish_run_only_by_the_owner_and_closes_the_sweep(
    session: Session, make_runs: MakeRuns
) -> None:
    ids = _claimed(session, make_runs, 2)
    assert finish_run(session, ids[0], "someone-else", RunStatus.SUCCEEDED) is False
    assert finish_run(session, ids[0], "w1", RunStatus.SUCCEEDED, inputs_seen=100) is True
    session.commit()
    sweep = session.get(Sweep, _run(session, ids[0]).sweep_id, populate_existing=True)
    assert sweep is not None and sweep.status is SweepStatus.ACTIVE

    assert finish_run(
        session, ids[1], "w1", RunStatus.FAILED, error="ValueError: boom", traceback="Traceback…"
    )
    session.commit()
    first, second = _run(session, ids[0]), _run(session, ids[1])
    assert (first.status, first.inputs_seen, first.lease_expires_at) == (
        RunStatus.SUCCEEDED, 100, None,
    )  # fmt: skip
    assert (second.status, second.error, second.traceback) == (
        RunStatus.FAILED, "ValueError: boom", "Traceback…",
    )  # fmt: skip
    assert second.finished_at is not None
    session.refresh(sweep)
    assert sweep.status is SweepStatus.FINISHED and sweep.finished_at is not None
    # A late duplicate cannot overwrite the outcome.
    assert finish_run(session, ids[1], "w1", RunStatus.SUCCEEDED) is False
    with pytest.raises(ValueError, match="not queued"):
        finish_run(session, ids[1], "w1", RunStatus.QUEUED)


def test_expire_leases_requeues_cancels_and_gives_up(session: Session, make_runs: MakeRuns) -> None:
    live, lost, cancelled, hopeless = _claimed(session, make_runs, 4)
    past = utcnow() - timedelta(seconds=5)
    session.execute(
        update(Run).where(Run.id.in_([lost, cancelled, hopeless])).values(lease_expires_at=past)
    )
    session.execute(update(Run).where(Run.id == cancelled).values(cancel_requested=True))
    session.execute(update(Run).where(Run.id == hopeless).values(attempts=3))
    session.commit()

    done = expire_leases(session, max_attempts=3)
    session.commit()
    assert (done.requeued, done.cancelled, done.failed) == ([lost], [cancelled], [hopeless])
    assert _run(session, live).status is RunStatus.RUNNING
    requeued = _run(session, lost)
    assert (requeued.status, requeued.lease_owner) == (RunStatus.QUEUED, None)
    assert _run(session, cancelled).status is RunStatus.CANCELLED
    failed = _run(session, hopeless)
    assert failed.status is RunStatus.FAILED and "lost 3 times" in (failed.error or "")
    # The old owner cannot finish a run it no longer holds.
    assert finish_run(session, lost, "w1", RunStatus.SUCCEEDED) is False
    assert expire_leases(session, max_attempts=3).requeued == []


def test_stale_queued_runs_and_mark_enqueued(session: Session, make_runs: MakeRuns) -> None:
    old, fresh, never = make_runs(3)
    long_ago = utcnow() - timedelta(seconds=120)
    session.execute(update(Run).where(Run.id == old).values(enqueued_at=long_ago))
    session.execute(
        update(Run).where(Run.id == never).values(enqueued_at=None, created_at=long_ago)
    )
    session.commit()
    assert stale_queued_runs(session, older_than_seconds=60) == [old, never]
    mark_enqueued(session, [old, never])
    session.commit()
    assert stale_queued_runs(session, older_than_seconds=60) == []
    assert fresh  # still queued, within its grace period


def test_finish_sweeps_waits_for_every_run(session: Session, make_runs: MakeRuns) -> None:
    (queued,) = make_runs(1)
    sweep_id = _run(session, queued).sweep_id
    assert update_sweep_status(session) == []
    session.execute(update(Run).where(Run.id == queued).values(status=RunStatus.CANCELLED))
    assert update_sweep_status(session, []) == []
    assert update_sweep_status(session) == [sweep_id]
