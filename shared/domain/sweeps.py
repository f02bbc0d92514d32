"""A sweep's status: active, held (holds.py), or finished once none of its runs is live.

Applied after every change of a run's state (shared/domain/runs.py) and by the reconciler.
When a trial of a searching sweep ends, the search first asks its next trials
(shared/domain/search.py), so the sweep stays active until `trials` were started.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, exists, update
from sqlalchemy.orm import Session

from shared.db.models import LIVE_STATUSES, Run, RunStatus, Sweep, SweepStatus, utcnow


def update_sweep_status(session: Session, sweep_ids: Sequence[int] | None = None) -> list[int]:
    """A sweep is active while some run is queued or running; else held while some run is
    held (shared/domain/holds.py); else finished.

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


def runs_ended(session: Session, sweep_ids: Sequence[int], *, ask_next: bool) -> list[int]:
    """Runs of these sweeps ended: a searching sweep asks its next trials (not after a
    cancel), then the status rule; returns the ids it finished."""
    if ask_next:
        # Imported here: search imports runs (through submit), which imports this module.
        from shared.domain.search import continue_searches

        continue_searches(session, sweep_ids)
    return update_sweep_status(session, sweep_ids)
