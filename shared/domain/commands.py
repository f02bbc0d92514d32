"""Commands on stored sweeps: cancel, retry, and the rule that says when a sweep is finished.

Status changes that race with a worker are conditional UPDATEs, so a run the worker has just
claimed is never cancelled as if it were still queued. Functions flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, update
from sqlalchemy.orm import Session

from shared.db import links
from shared.db.models import Run, RunStatus, Sweep, SweepStatus, utcnow
from shared.domain.errors import Conflict
from shared.domain.reads import get_run, get_sweep

LIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# A pruned run retried resumes from its checkpoint and trains to its full budget.
RETRYABLE_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED)
_CHUNK = 1000  # bound the parameters of one IN (...) list


def update_sweep_status(session: Session, sweep_ids: Sequence[int] | None = None) -> list[int]:
    """A sweep is active while some run is queued or running; else held while some run is
    held (shared/db/holds.py); else finished.

    Applies the rule to `sweep_ids` (every sweep when None); returns the ids it finished.
    """
    if sweep_ids is not None and not sweep_ids:
        return []
    scope = [] if sweep_ids is None else [Sweep.id.in_(list(sweep_ids))]
    live = exists().where(Run.sweep_id == Sweep.id, Run.status.in_(LIVE_STATUSES))
    held = exists().where(Run.sweep_id == Sweep.id, Run.status == RunStatus.HELD)
    # Only an active sweep becomes held (holds.py holds the queued runs of a running sweep).
    changes = (
        (SweepStatus.ACTIVE, Sweep.status != SweepStatus.ACTIVE, live),
        (SweepStatus.HELD, Sweep.status == SweepStatus.ACTIVE, and_(~live, held)),
    )
    for status, current, condition in changes:
        session.execute(
            update(Sweep)
            .where(*scope, current, condition)
            .values(status=status, finished_at=None)
            .execution_options(synchronize_session=False)
        )
    finished = session.scalars(
        update(Sweep)
        .where(*scope, Sweep.status != SweepStatus.FINISHED, ~live, ~held)
        .values(status=SweepStatus.FINISHED, finished_at=utcnow())
        .returning(Sweep.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(finished)


def mark_enqueued(session: Session, run_ids: Sequence[int]) -> None:
    """Note that a message was sent for these queued runs, restarting their grace period
    (the reconciler re-sends a queued run's message only after it)."""
    ids = list(run_ids)
    now = utcnow()
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            update(Run)
            .where(Run.id.in_(ids[start : start + _CHUNK]), Run.status == RunStatus.QUEUED)
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )


def cancel_run(session: Session, run_id: int) -> Run:
    """Queued -> cancelled now; running -> cancel_requested (its worker stops it); else Conflict."""
    run = get_run(session, run_id)
    if _cancel_queued(session, Run.id == run_id):
        session.refresh(run)
        update_sweep_status(session, [run.sweep_id])
        return run
    requested = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.RUNNING)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    session.refresh(run)
    if not requested.rowcount:  # type: ignore[attr-defined]
        raise Conflict(f"run {run_id} is already {run.status.value}; there is nothing to cancel")
    return run


@dataclass(frozen=True)
class CancelResult:
    cancelled: list[int]  # were queued, now cancelled
    cancel_requested: list[int]  # running; their workers stop them at the next step


def cancel_sweep(session: Session, sweep_id: int) -> CancelResult:
    """Cancel every queued run and ask every running one to stop; Conflict if all finished."""
    get_sweep(session, sweep_id)
    cancelled = _cancel_queued(session, Run.sweep_id == sweep_id)
    requested = list(
        session.scalars(
            update(Run)
            .where(Run.sweep_id == sweep_id, Run.status == RunStatus.RUNNING)
            .values(cancel_requested=True)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not cancelled and not requested:
        raise Conflict(f"every run of sweep {sweep_id} has finished; there is nothing to cancel")
    update_sweep_status(session, [sweep_id])
    session.expire_all()
    return CancelResult(sorted(cancelled), sorted(requested))


def _cancel_queued(session: Session, where: Any) -> list[int]:
    statement = (
        update(Run)
        .where(where, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=utcnow())
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    ids = list(session.scalars(statement))
    # Runs of other sweeps linked to these end cancelled too, and their sweeps may finish.
    update_sweep_status(session, links.settle_links(session, ids))
    return ids


def retry_runs(session: Session, sweep_id: int, run_ids: Sequence[int] | None = None) -> list[int]:
    """Failed, cancelled and pruned runs of the sweep (or `run_ids`) -> queued; ids to enqueue."""
    get_sweep(session, sweep_id)
    where = [Run.sweep_id == sweep_id, Run.status.in_(RETRYABLE_STATUSES)]
    if run_ids is not None:
        where.append(Run.id.in_(run_ids))
    statement = (
        update(Run)
        .where(*where)
        .values(
            status=RunStatus.QUEUED,
            reused_from_id=None,  # a run linked to one that failed now trains itself
            cancel_requested=False,
            error=None,
            traceback=None,
            finished_at=None,
            lease_owner=None,
            lease_expires_at=None,
            enqueued_at=None,
        )
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    ids = sorted(session.scalars(statement))
    if ids:
        update_sweep_status(session, [sweep_id])
    session.expire_all()
    return ids
