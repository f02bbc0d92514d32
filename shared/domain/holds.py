"""Holding a sweep whose first runs all fail the same way, instead of failing every run.

The rule (applied by finish_run, shared/domain/runs.py): when a run of a sweep ends failed,
and the sweep has not succeeded once (no run succeeded or was pruned), and its first HOLD_AFTER
failed runs (by finish time) share one error signature, the sweep is held: its queued runs
become `held`, which workers do not start, and the sweep records why. A file whose model is
wrong thus costs three runs, not ten thousand. These state changes live here rather than in
runs.py only to keep that module under 400 lines.

Runs already running carry on. Runs linked to another sweep's training are left as they
are. `release` (POST /sweeps/{id}/retry) queues the held runs again; a released
sweep is not held again, since a person has decided to run it.
"""

from __future__ import annotations

import re

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, Sweep, utcnow

HOLD_AFTER = 3
_NUMBERS = re.compile(r"\d+(\.\d+)?")
_SUCCESS = (RunStatus.SUCCEEDED, RunStatus.PRUNED)


def error_signature(error: str | None) -> str:
    """What makes two failures "the same": the error's first line, numbers blanked.

    Runs of a matrix differ in their numbers ("shapes (32x16 and 8x2)" for one size, "(32x16
    and 4x2)" for another) while failing for the same reason.
    """
    lines = (error or "").strip().splitlines()
    return _NUMBERS.sub("N", lines[0] if lines else "")[:500]


def hold_if_failing(session: Session, sweep_id: int, ended: RunStatus) -> bool:
    """Apply the rule to a sweep after one of its runs ended `ended`; True if it is now held."""
    if ended is not RunStatus.FAILED:
        return False
    sweep = session.execute(
        select(Sweep.hold_reason, Sweep.released_at).where(Sweep.id == sweep_id)
    ).one_or_none()
    if sweep is None or sweep.hold_reason is not None or sweep.released_at is not None:
        return False
    trained = [Run.sweep_id == sweep_id, Run.reused_from_id.is_(None)]
    if session.scalar(select(exists().where(*trained, Run.status.in_(_SUCCESS)))):
        return False
    first = session.scalars(
        select(Run.error)
        .where(*trained, Run.status == RunStatus.FAILED)
        .order_by(Run.finished_at, Run.id)
        .limit(HOLD_AFTER)
    ).all()
    if len(first) < HOLD_AFTER or len({error_signature(e) for e in first}) != 1:
        return False
    held = session.execute(
        update(Run)
        .where(*trained, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.HELD)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    headline = ((first[0] or "").strip().splitlines() or [""])[0]
    reason = (
        f"the first {HOLD_AFTER} runs failed with the same error: {headline[:1000]}; "
        f"{held} queued run{'s' if held != 1 else ''} held"
    )
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id)
        .values(hold_reason=reason, held_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return True


def release(session: Session, sweep_id: int) -> list[int]:
    """Held runs -> queued (ids to enqueue); the sweep is marked released."""
    ids = session.scalars(
        update(Run)
        .where(Run.sweep_id == sweep_id, Run.status == RunStatus.HELD)
        .values(status=RunStatus.QUEUED, enqueued_at=None)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.hold_reason.is_not(None))
        .values(hold_reason=None, released_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return sorted(ids)
