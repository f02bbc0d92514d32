"""A sweep's status: finished once none of its runs is live (queued or running).

Applied after every change of a run's state (shared/domain/runs.py) and by the reconciler.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, update
from sqlalchemy.orm import Session

from shared.db.models import LIVE_STATUSES, Run, Sweep, SweepStatus, utcnow


def update_sweep_status(session: Session, sweep_ids: Sequence[int] | None = None) -> list[int]:
    """A sweep is finished once none of its runs is queued or running, and active otherwise.

    Applies the rule to `sweep_ids` (every sweep when None); returns the ids it finished.
    """
    if sweep_ids is not None and not sweep_ids:
        return []
    scope = [] if sweep_ids is None else [Sweep.id.in_(list(sweep_ids))]
    live = exists().where(Run.sweep_id == Sweep.id, Run.status.in_(LIVE_STATUSES))
    session.execute(
        update(Sweep)
        .where(*scope, Sweep.status == SweepStatus.FINISHED, live)
        .values(status=SweepStatus.ACTIVE, finished_at=None)
        .execution_options(synchronize_session=False)
    )
    finished = session.scalars(
        update(Sweep)
        .where(*scope, Sweep.status == SweepStatus.ACTIVE, ~live)
        .values(status=SweepStatus.FINISHED, finished_at=utcnow())
        .returning(Sweep.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(finished)
