"""The claim is the guard against double training: one conditional UPDATE, one winner."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, utcnow
from shared.db.session import make_engine
from shared.domain.runs import claim_run, renew_lease
from tests.worker.conftest import MakeRuns


def _expire(session: Session, run_id: int) -> None:
    session.execute(
        update(Run).where(Run.id == run_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()


def test_claim_takes_a_queued_run(session: Session, make_runs: MakeRuns) -> None:
    (run_id,) = make_runs()
    run = claim_run(session, run_id, "w1", 60, host="box")
    session.commit()
    assert run is not None
    assert run.status is RunStatus.RUNNING
    assert run.lease_owner == "w1"
    assert run.attempts == 1
    assert run.worker_host == "box"
    assert run.started_at is not None
    assert run.lease_expires_at is not None
    assert run.lease_expires_at > utcnow() + timedelta(seconds=50)


def test_duplicate_delivery_is_refused_while_the_lease_is_live(
    session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs()
    assert claim_run(session, run_id, "w1", 60) is not None
    session.commit()
    assert claim_run(session, run_id, "w2", 60) is None
    session.commit()
    # The same attempt claiming again (its first commit's reply was lost) keeps the run.
    assert claim_run(session, run_id, "w1", 60) is not None
    session.commit()
    run = session.get(Run, run_id, populate_existing=True)
    assert run is not None
    assert (run.lease_owner, run.attempts) == ("w1", 2)


def test_expired_lease_is_reclaimable(session: Session, make_runs: MakeRuns) -> None:
    (run_id,) = make_runs()
    assert claim_run(session, run_id, "w1", 60) is not None
    session.commit()
    _expire(session, run_id)
    run = claim_run(session, run_id, "w2", 60)
    session.commit()
    assert run is not None
    assert (run.lease_owner, run.attempts) == ("w2", 2)
    # The old owner's heartbeat now learns it lost the run.
    assert renew_lease(session, run_id, "w1", 60).owned is False
    assert renew_lease(session, run_id, "w2", 60).owned is True


def test_expired_lease_is_not_reclaimed_past_max_attempts(
    session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs()
    for owner in ("w1", "w2"):
        assert claim_run(session, run_id, owner, 60, max_attempts=2) is not None
        session.commit()
        _expire(session, run_id)
    assert claim_run(session, run_id, "w3", 60, max_attempts=2) is None


def test_finished_and_cancelled_runs_are_skipped(session: Session, make_runs: MakeRuns) -> None:
    ids = make_runs(len(RunStatus) - 2)
    ended = [s for s in RunStatus if s not in (RunStatus.QUEUED, RunStatus.RUNNING)]
    for run_id, status in zip(ids, ended, strict=True):
        session.execute(update(Run).where(Run.id == run_id).values(status=status))
    session.commit()
    assert [claim_run(session, run_id, "w1", 60) for run_id in ids] == [None] * len(ids)


def test_cancel_requested_running_run_is_not_reclaimed(
    session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs()
    assert claim_run(session, run_id, "w1", 60) is not None
    session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
    session.commit()
    _expire(session, run_id)
    assert claim_run(session, run_id, "w2", 60) is None


def test_concurrent_claims_have_exactly_one_winner(
    db_url: str, session: Session, make_runs: MakeRuns
) -> None:
    run_ids = make_runs(5)
    contenders = 6
    engine = make_engine(db_url, pool_size=contenders, max_overflow=0)
    wins: dict[int, list[str]] = {run_id: [] for run_id in run_ids}
    errors: list[BaseException] = []
    barrier = threading.Barrier(contenders)
    lock = threading.Lock()

    def contend(owner: str) -> None:
        try:
            with Session(engine) as own:
                barrier.wait()
                for run_id in run_ids:
                    if claim_run(own, run_id, owner, 60) is not None:
                        with lock:
                            wins[run_id].append(owner)
                    own.commit()
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    engine.dispose()
    assert errors == []
    assert all(len(owners) == 1 for owners in wins.values()), wins
    runs = session.query(Run).filter(Run.id.in_(run_ids)).populate_existing().all()
    assert {r.id: r.lease_owner for r in runs} == {k: v[0] for k, v in wins.items()}
    assert all(r.attempts == 1 for r in runs)
