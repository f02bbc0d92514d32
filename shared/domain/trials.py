"""A search's trials as the sampler and the sweep page see them: each run with its metric.

A trial is an ordinary run of the sweep; its number is the order it was asked in (run ids
grow with it). Its value is the search metric's newest point, read from the run whose results
it shows (a reused trial: the earlier run's). A pruned trial also brings its curve of that
metric, which Optuna's TPE uses to rank it below the trials that finished.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.chunks import chunked
from shared.db.models import LIVE_STATUSES, LatestMetric, Metric, Run, RunStatus
from shared.domain.reads import source_of
from shared.sweepfile.search import Search


@dataclass(frozen=True)
class Trial:
    number: int  # 1-based, in the order the trials were asked
    run_id: int
    status: RunStatus
    params: dict[str, Any]
    value: float | None  # the metric's newest point (NaN kept as NaN); None before any
    curve: dict[int, float] = field(default_factory=dict)  # pruned trials: step -> value

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


@dataclass(frozen=True)
class BestPoint:
    trial: int
    run_id: int
    value: float | None  # this trial's value
    best: float | None  # the best of trials 1..n that finished with a value


def sweep_trials(session: Session, sweep_id: int, metric: str | None) -> list[Trial]:
    """The sweep's runs as trials, in the order they were asked."""
    rows = session.execute(
        select(Run.id, Run.status, Run.reused_from_id, Run.params)
        .where(Run.sweep_id == sweep_id)
        .order_by(Run.id)
    ).all()
    sources = {r.id: source_of(r.id, r.status, r.reused_from_id) for r in rows}
    values = metric_values(session, set(sources.values()), metric)
    pruned = {sources[r.id] for r in rows if r.status == RunStatus.PRUNED}
    curves = metric_curves(session, pruned, metric)
    return [
        Trial(
            number=number,
            run_id=r.id,
            status=RunStatus(r.status),
            params=dict(r.params or {}),
            value=values.get(sources[r.id]),
            curve=curves.get(sources[r.id], {}),
        )
        for number, r in enumerate(rows, start=1)
    ]


def metric_values(session: Session, run_ids: set[int], metric: str | None) -> dict[int, float]:
    """run id -> the metric's newest value (NaN for a non-finite point stored as such)."""
    if metric is None or not run_ids:
        return {}
    values: dict[int, float] = {}
    for chunk in chunked(sorted(run_ids)):
        query = select(LatestMetric.run_id, LatestMetric.value, LatestMetric.is_nan).where(
            LatestMetric.run_id.in_(chunk), LatestMetric.key == metric
        )
        values.update((run_id, math.nan if nan else v) for run_id, v, nan in session.execute(query))
    return values


def metric_curves(
    session: Session, run_ids: set[int], metric: str | None
) -> dict[int, dict[int, float]]:
    if metric is None or not run_ids:
        return {}
    curves: dict[int, dict[int, float]] = defaultdict(dict)
    for chunk in chunked(sorted(run_ids)):
        query = select(Metric.run_id, Metric.step, Metric.value).where(
            Metric.run_id.in_(chunk), Metric.key == metric, Metric.is_nan.is_(False)
        )
        for run_id, step, value in session.execute(query):
            curves[run_id][step] = value
    return dict(curves)


def is_better(value: float, than: float | None, mode: str) -> bool:
    if than is None:
        return True
    return value > than if mode == "max" else value < than


def best_so_far(trials: list[Trial], search: Search) -> list[BestPoint]:
    """The search's progress: per trial, its value and the best value found up to it.

    Only trials that succeeded (or reused a success) count: a pruned trial's value is from
    part of its budget, and a failed or running one has none to compare.
    """
    points, best = [], None
    for trial in trials:
        value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
        done = trial.status in (RunStatus.SUCCEEDED, RunStatus.REUSED)
        if done and value is not None and is_better(value, best, search.mode):
            best = value
        points.append(BestPoint(trial.number, trial.run_id, value if done else None, best))
    return points


# Where a running search records, in `sweeps.search`, why it could not ask its next trial.
STOPPED_KEY = "stopped"


@dataclass(frozen=True)
class SearchProgress:
    search: Search
    started: int  # trials started (runs of the sweep)
    points: list[BestPoint]  # per trial, in the order asked
    stopped: str | None = None  # why the search could not ask its next trial

    @property
    def best(self) -> BestPoint | None:
        """The trial that holds the best value (the first to reach it)."""
        final = self.points[-1].best if self.points else None
        return (
            next((p for p in self.points if p.value == final), None) if final is not None else None
        )

    def to_json(self) -> dict[str, Any]:
        search = self.search
        best = self.best
        return {
            "method": search.method,
            "trials": search.trials,
            "metric": search.metric,
            "mode": search.mode,
            "in_flight": search.in_flight,
            "seed": search.seed,
            "description": search.describe(),
            "started": self.started,
            "best_run_id": best.run_id if best else None,
            "best_value": best.value if best else None,
            "best_so_far": [vars(p) for p in self.points],
            "stopped": self.stopped,
        }


def search_progress(
    session: Session, sweep_id: int, stored: dict[str, Any] | None
) -> SearchProgress | None:
    """A searching sweep's trials and best-so-far curve; None for a sweep without `search`."""
    if not stored:
        return None
    search = Search.from_json(stored)
    trials = sweep_trials(session, sweep_id, search.metric)
    return SearchProgress(search, len(trials), best_so_far(trials, search), stored.get(STOPPED_KEY))
