"""Task messages tied to the commit (shared/db/session.py, through shared/domain/runs.py):
recorded on the session, sent by the after-commit hook, never for a rolled-back transaction;
sent runs are marked enqueued."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.models import Run
from shared.db.session import commit
from shared.domain.runs import enqueue_after_commit
from tests.worker.conftest import MakeRuns


def _enqueued_at(session: Session, run_ids: list[int]) -> list[object]:
    query = select(Run.enqueued_at).where(Run.id.in_(run_ids)).order_by(Run.id)
    return list(session.scalars(query))


@pytest.fixture
def fresh_runs(session: Session, make_runs: MakeRuns) -> list[int]:
    ids = make_runs(3)
    session.execute(update(Run).where(Run.id.in_(ids)).values(enqueued_at=None))
    session.commit()
    return ids


def test_nothing_is_sent_before_the_commit(session: Session, fresh_runs: list[int]) -> None:
    sent: list[int] = []
    enqueue_after_commit(session, fresh_runs, sent.append)
    session.flush()
    assert sent == []
    outcome = commit(session)
    assert sent == fresh_runs and outcome.sent == fresh_runs and outcome.warnings == []
    assert all(at is not None for at in _enqueued_at(session, fresh_runs))


def test_a_rollback_sends_nothing(session: Session, fresh_runs: list[int]) -> None:
    sent: list[int] = []
    enqueue_after_commit(session, fresh_runs, sent.append)
    session.rollback()
    assert commit(session).sent == [] and sent == []
    assert _enqueued_at(session, fresh_runs) == [None, None, None]


def test_a_broker_failure_leaves_the_rest_to_the_reconciler(
    session: Session, fresh_runs: list[int]
) -> None:
    sent: list[int] = []

    def send(run_id: int) -> None:
        if len(sent) == 1:
            raise ConnectionError("broker down")
        sent.append(run_id)

    enqueue_after_commit(session, fresh_runs, send)
    outcome = commit(session)
    assert outcome.sent == fresh_runs[:1]
    assert len(outcome.warnings) == 1
    assert "ConnectionError" in outcome.warnings[0] and "2 queued runs" in outcome.warnings[0]
    first, *rest = _enqueued_at(session, fresh_runs)
    assert first is not None and rest == [None, None]
