"""Retrying a sweep: release its held runs, queue its failed ones again, optionally with a
fixed file.

A sweep stores its file and each run its resolved configuration, so fixing the file on disk
changes nothing stored. A held sweep therefore asks for one of two things: the fixed file
(`spec`), which must expand to the same runs (same matrix ids and slugs) and replaces the
configuration of every run that has not trained yet; or `force`, which releases the runs as
they are (the failure was elsewhere: a missing dataset, a full disk). Runs that trained part
way keep their configuration, so that they resume from their checkpoints.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, Sweep
from shared.domain import holds
from shared.domain.errors import Conflict
from shared.domain.reads import get_sweep
from shared.domain.runs import retry_runs
from shared.domain.submit import json_safe
from shared.domain.sweeps import update_sweep_status
from shared.sweepfile import SpecError, SweepSpec

# Runs a fixed file may change: those that have not trained (nothing to resume).
REFITTABLE = (RunStatus.HELD, RunStatus.FAILED, RunStatus.CANCELLED)


def retry_sweep(session: Session, sweep_id: int, *, force: bool = False) -> list[int]:
    """Held, failed, cancelled and pruned runs -> queued; the ids to enqueue after commit.

    Conflict for a held sweep unless `force` (the caller has refitted it with a fixed file,
    or a person chose to run it unchanged).
    """
    sweep = get_sweep(session, sweep_id)
    if sweep.hold_reason is not None and not force:
        raise Conflict(
            f"sweep {sweep_id} is held: {sweep.hold_reason}. Fix the file and retry with it "
            f"(sweeps retry {sweep_id} --file FILE), or release the runs unchanged with --force"
        )
    released = holds.release(session, sweep_id)
    retried = retry_runs(session, sweep_id)
    update_sweep_status(session, [sweep_id])
    session.expire_all()
    return sorted({*released, *retried})


def refit(session: Session, sweep_id: int, spec: SweepSpec) -> int:
    """Give the sweep's untrained runs the configurations of a fixed file; how many changed.

    SpecError (a 422) when the file expands to other runs than the sweep's.
    """
    get_sweep(session, sweep_id)
    query = select(Run.matrix_id, Run.slug).where(Run.sweep_id == sweep_id)
    stored = {matrix_id: slug for matrix_id, slug in session.execute(query)}
    given = {r.matrix_id: r.slug for r in spec.runs}
    if given != stored:
        differ = sorted(set(given.items()) ^ set(stored.items()))[:3]
        shown = ", ".join(f"{m} ({s})" if s else m for m, s in differ)
        raise SpecError(
            f"the file gives other runs than sweep {sweep_id} ({len(given)} runs against "
            f"{len(stored)}; first differences: {shown}); submit it as a new sweep instead",
            key="matrix",
        )
    untrained = select(Run.matrix_id, Run.id).where(
        Run.sweep_id == sweep_id, Run.status.in_(REFITTABLE), Run.inputs_seen == 0
    )
    ids = {matrix_id: run_id for matrix_id, run_id in session.execute(untrained)}
    rows: list[dict[str, Any]] = [
        {
            "id": ids[r.matrix_id],
            "experiment_name": r.experiment_name,
            "params": json_safe(r.params),
            "config": json_safe(r.config),
            "config_hash": r.config_hash,
            "max_inputs": r.settings.max_inputs,
        }
        for r in spec.runs
        if r.matrix_id in ids
    ]
    if rows:
        session.execute(update(Run), rows)
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id)
        .values(yaml_text=spec.yaml_text, matrix_keys=list(spec.matrix_keys))
        .execution_options(synchronize_session=False)
    )
    return len(rows)
