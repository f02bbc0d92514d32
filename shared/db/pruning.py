"""Queries behind early stopping (shared/sweepfile/early_stop.py): rung values and prune marks
(the judgement that writes a mark is `shared.domain.runs.judge_rung`).

A run's value at a rung is its metric at its first validation at or past the rung's inputs,
read from the stored curves, so the decision holds across workers and hosts. Two runs that
reach a rung in the same instant may each miss the other's uncommitted point; ASHA tolerates
that (each is judged against the runs that got there first), and no run waits for another.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, exists, select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, RunStatus

# Written when a run is pruned (step and value: the rung's inputs); it stays when the run is
# retried, and a run that has one is trained to its full budget without being judged again.
PRUNED_AT_KEY = "pruned_at"


@dataclass(frozen=True)
class PruneState:
    sweep_id: int
    was_pruned: bool


def prune_state(session: Session, run_id: int) -> PruneState:
    """The run's sweep, and whether it was pruned before (a retry then runs to the end)."""
    marked = exists().where(Metric.run_id == Run.id, Metric.key == PRUNED_AT_KEY)
    sweep_id, was_pruned = session.execute(
        select(Run.sweep_id, marked).where(Run.id == run_id)
    ).one()
    return PruneState(sweep_id=sweep_id, was_pruned=bool(was_pruned))


def rung_values(session: Session, sweep_id: int, metric: str, inputs: int) -> dict[int, float]:
    """run id -> the metric at its first validation at or past `inputs`, for the sweep's runs.

    A reused run (or one linked to a run of another sweep) counts with its source's curve.
    """
    source = case(
        (and_(Run.status == RunStatus.REUSED, Run.reused_from_id.is_not(None)),
         Run.reused_from_id),
        else_=Run.id,
    )  # fmt: skip
    sources = {rid: src for rid, src in session.execute(
        select(Run.id, source).where(Run.sweep_id == sweep_id)
    )}  # fmt: skip
    if not sources:
        return {}
    query = (
        select(Metric.run_id, Metric.value, Metric.is_nan)
        .where(
            Metric.run_id.in_(set(sources.values())),
            Metric.key == metric,
            Metric.step >= inputs,
        )
        .order_by(Metric.run_id, Metric.step)
    )
    first: dict[int, float] = {}
    for run_id, value, is_nan in session.execute(query):
        first.setdefault(run_id, float("nan") if is_nan else value)
    return {rid: first[src] for rid, src in sources.items() if src in first}
