"""Reads: sweeps, runs, per-sweep summaries, and which run's results a reused run shows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session, defer

from shared.db.models import Run, RunStatus, Sweep
from shared.domain.errors import NotFound

COMPARE_RECENT_SWEEPS = 8
COMPARE_MAX_CANDIDATES = 400


def source_of(run_id: int, status: RunStatus | str, reused_from_id: int | None) -> int:
    """The run whose metrics a run shows: the one it reuses or is linked to (shared/domain/runs.py,
    a queued run waiting on another's training), or itself."""
    linked = status in (RunStatus.REUSED, RunStatus.QUEUED)  # a StrEnum equals its value
    if linked and reused_from_id is not None:
        return reused_from_id
    return run_id


def source_id(session: Session, run_id: int) -> int:
    """`source_of` for a run by id; NotFound if there is no such run."""
    row = session.execute(
        select(Run.status, Run.reused_from_id).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    return source_of(run_id, row.status, row.reused_from_id)


@dataclass(frozen=True)
class SweepSummary:
    sweep: Sweep
    counts: dict[str, int]  # status -> number of runs
    run_count: int
    progress: float | None  # sum(inputs seen) / sum(max_inputs), None without max_inputs


def get_sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    return sweep


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def list_sweeps(session: Session, *, limit: int = 50, offset: int = 0) -> tuple[list[Sweep], int]:
    """Newest first, one page; plus the total number of sweeps."""
    total = session.scalar(select(func.count()).select_from(Sweep)) or 0
    query = select(Sweep).order_by(Sweep.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query)), total


def summarize(session: Session, sweeps: Sequence[Sweep]) -> list[SweepSummary]:
    """Status counts and progress for each sweep, in two grouped queries."""
    ids = [s.id for s in sweeps]
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    progress: dict[int, float | None] = {}
    if ids:
        by_status = (
            select(Run.sweep_id, Run.status, func.count())
            .where(Run.sweep_id.in_(ids))
            .group_by(Run.sweep_id, Run.status)
        )
        for sweep_id, status, n in session.execute(by_status):
            counts[sweep_id][RunStatus(status).value] = n
        # A run may overshoot max_inputs by part of a batch; cap it so progress ends at 1.
        seen = case((Run.inputs_seen < Run.max_inputs, Run.inputs_seen), else_=Run.max_inputs)
        sums = (
            select(Run.sweep_id, func.sum(seen), func.sum(Run.max_inputs))
            .where(Run.sweep_id.in_(ids), Run.max_inputs.is_not(None))
            .group_by(Run.sweep_id)
        )
        for sweep_id, done, total in session.execute(sums):
            progress[sweep_id] = float(done or 0) / float(total) if total else None
    return [
        SweepSummary(
            sweep=s,
            counts=dict(counts[s.id]),
            run_count=sum(counts[s.id].values()),
            progress=progress.get(s.id),
        )
        for s in sweeps
    ]


def sweep_runs(
    session: Session,
    sweep_id: int,
    *,
    limit: int | None = None,
    offset: int = 0,
    statuses: Sequence[RunStatus] = (),
) -> list[Run]:
    """The sweep's runs by id (one page, of `statuses` if given), without their large columns
    (config, provenance, traceback)."""
    query = (
        select(Run)
        .where(Run.sweep_id == sweep_id, *([Run.status.in_(statuses)] if statuses else []))
        .order_by(Run.id)
        .options(defer(Run.config), defer(Run.provenance), defer(Run.traceback))
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def compare_candidates(session: Session, picked: set[int]) -> list[dict[str, Any]]:
    """Runs offered for comparing: those picked, their sweeps' others, and recent sweeps'."""
    recent = list(
        session.scalars(select(Sweep.id).order_by(Sweep.id.desc()).limit(COMPARE_RECENT_SWEEPS))
    )
    picked_sweeps = select(Run.sweep_id).where(Run.id.in_(picked))
    query = (
        select(Run.id, Run.sweep_id, Run.slug, Run.status, Sweep.name)
        .join(Sweep, Sweep.id == Run.sweep_id)
        .where(or_(Run.id.in_(picked), Run.sweep_id.in_(recent), Run.sweep_id.in_(picked_sweeps)))
        .order_by(Run.sweep_id.desc(), Run.id)
        .limit(COMPARE_MAX_CANDIDATES)
    )
    return [
        {
            "id": row.id,
            "sweep_id": row.sweep_id,
            "sweep_name": row.name,
            "slug": row.slug,
            "status": row.status.value,
            "picked": row.id in picked,
        }
        for row in session.execute(query)
    ]
