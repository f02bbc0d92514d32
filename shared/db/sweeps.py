"""Queries behind the API: create sweeps (reusing earlier results), read, cancel, retry,
metric series and table rows.

Every function takes `session` and may flush, never commit: the request (or task) that calls
it owns the transaction. Status changes that race with a worker are conditional UPDATEs, so
a run the worker has just claimed is never cancelled as if it were still queued.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session, defer

from shared.db import links
from shared.db.models import (
    FINISHED_STATUSES,
    LatestMetric,
    Metric,
    Run,
    RunStatus,
    Sweep,
    SweepStatus,
    utcnow,
)
from shared.spec import RunSpec, SpecError
from shared.spec import Sweep as SweepSpec
from shared.table import TABLE_KEYS, TableRun

ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# A pruned run retried resumes from its checkpoint and trains to its full budget.
RETRYABLE_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED)
_CHUNK = 1000  # bound the parameters of one IN (...) list
MAX_INPUTS = 2**62  # runs.max_inputs and metrics.step are BIGINT


class NotFound(LookupError):
    """No sweep or run with that id."""


class Conflict(Exception):
    """The request does not fit the current state (e.g. cancelling a finished run)."""


# ---------------------------------------------------------------- create and preview


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    reuse_from_id: int | None  # a succeeded run with the same config_hash, unless forced
    # else a queued or running run with that hash: linked to it, not trained twice (links.py)
    link_to_id: int | None = None


def find_reusable(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    """config_hash -> id of the newest succeeded run with that hash."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        query = (
            select(Run.config_hash, func.max(Run.id))
            .where(Run.config_hash.in_(chunk), Run.status == RunStatus.SUCCEEDED)
            .group_by(Run.config_hash)
        )
        found.update({h: run_id for h, run_id in session.execute(query)})
    return found


def plan_runs(session: Session, spec: SweepSpec, *, force: bool = False) -> list[PlannedRun]:
    """Each run of the spec with the earlier run it would reuse (none when `force`)."""
    if force:
        return [PlannedRun(r, None) for r in spec.runs]
    reusable = find_reusable(session, (r.config_hash for r in spec.runs))
    live = links.find_live(
        session, (r.config_hash for r in spec.runs if r.config_hash not in reusable)
    )
    return [PlannedRun(r, reusable.get(r.config_hash), live.get(r.config_hash)) for r in spec.runs]


def json_safe(value: Any) -> Any:
    """`value` as it is stored: dates and sets become strings, as the spec hashes them."""
    return json.loads(json.dumps(value, default=str))


def check_storable(spec: RunSpec) -> None:
    """SpecError for values no database column can hold (YAML escapes can make them)."""
    label = f"{spec.matrix_id} ({spec.slug})" if spec.slug else None
    for key, value in spec.config.items():
        problem = _unstorable(value)
        if problem:
            raise SpecError(
                f"'{key}' holds {problem}, which cannot be stored", key=str(key), run=label
            )
    max_inputs = spec.config.get("max_inputs")
    if isinstance(max_inputs, int) and max_inputs > MAX_INPUTS:
        raise SpecError(
            f"'max_inputs' must be at most {MAX_INPUTS:,}", key="max_inputs", value=max_inputs
        )


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\0)"
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            return "an unpaired UTF-16 surrogate"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"the number {value} (not valid JSON)"
    if isinstance(value, dict):
        items: Iterable[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set):
        items = value
    else:
        return None
    return next((p for p in map(_unstorable, items) if p), None)


def _max_inputs(config: dict[str, Any]) -> int | None:
    value = config.get("max_inputs")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def create_sweep(
    session: Session, spec: SweepSpec, *, name: str, force: bool = False
) -> tuple[Sweep, list[Run]]:
    """Store the sweep and its runs; runs already trained elsewhere become `reused`."""
    for run_spec in spec.runs:
        check_storable(run_spec)
    plans = plan_runs(session, spec, force=force)
    now = utcnow()
    sweep = Sweep(name=name[:200], yaml_text=spec.yaml_text, matrix_keys=list(spec.matrix_keys))
    session.add(sweep)
    session.flush()
    sources = _inputs_seen(session, {p.reuse_from_id for p in plans if p.reuse_from_id})
    runs = []
    for plan in plans:
        run = Run(
            sweep_id=sweep.id,
            matrix_id=plan.spec.matrix_id,
            slug=plan.spec.slug,
            experiment_name=plan.spec.experiment_name,
            params=json_safe(plan.spec.params),
            config=json_safe(plan.spec.config),
            config_hash=plan.spec.config_hash,
            max_inputs=_max_inputs(plan.spec.config),
            status=RunStatus.QUEUED,
            inputs_seen=0,
        )
        if plan.reuse_from_id is not None:
            run.status = RunStatus.REUSED
            run.reused_from_id = plan.reuse_from_id
            run.inputs_seen = sources.get(plan.reuse_from_id, 0)
            run.finished_at = now
        elif plan.link_to_id is not None:  # stays queued, no task: its source trains it
            run.reused_from_id = plan.link_to_id
        runs.append(run)
    session.add_all(runs)
    if all(run.status in FINISHED_STATUSES for run in runs):
        sweep.status = SweepStatus.FINISHED
        sweep.finished_at = now
    session.flush()
    return sweep, runs


def _inputs_seen(session: Session, run_ids: set[int]) -> dict[int, int]:
    if not run_ids:
        return {}
    query = select(Run.id, Run.inputs_seen).where(Run.id.in_(run_ids))
    return {run_id: seen for run_id, seen in session.execute(query)}


def mark_enqueued(session: Session, run_ids: Sequence[int]) -> None:
    """Record that a task message was sent for these runs (the reconciler looks at this)."""
    now = utcnow()
    for start in range(0, len(run_ids), _CHUNK):
        session.execute(
            update(Run)
            .where(Run.id.in_(run_ids[start : start + _CHUNK]))
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------- reads


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


def sweep_runs(session: Session, sweep_id: int) -> list[Run]:
    """The sweep's runs by id, without their large columns (config, provenance, traceback)."""
    query = (
        select(Run)
        .where(Run.sweep_id == sweep_id)
        .order_by(Run.id)
        .options(defer(Run.config), defer(Run.provenance), defer(Run.traceback))
    )
    return list(session.scalars(query))


def latest_metrics(session: Session, run_id: int) -> dict[str, tuple[int, float]]:
    """key -> (step, value) of the run's results (its source's, for a reused run)."""
    source = _source_id(session, run_id)
    query = select(LatestMetric.key, LatestMetric.step, LatestMetric.value).where(
        LatestMetric.run_id == source
    )
    return {key: (step, value) for key, step, value in session.execute(query)}


def _source_id(session: Session, run_id: int) -> int:
    row = session.execute(
        select(Run.status, Run.reused_from_id).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    status, reused_from = row
    if reused_from is not None and status in (RunStatus.REUSED, RunStatus.QUEUED):
        return int(reused_from)
    return run_id


# ---------------------------------------------------------------- cancel and retry


def refresh_sweep_status(session: Session, sweep_id: int) -> Sweep:
    """Sweep is finished when no run is queued or running (and active again otherwise)."""
    sweep = get_sweep(session, sweep_id)
    active = session.scalar(
        select(func.count())
        .select_from(Run)
        .where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE_STATUSES))
    )
    if active:
        sweep.status, sweep.finished_at = SweepStatus.ACTIVE, None
    elif sweep.status != SweepStatus.FINISHED:
        sweep.status, sweep.finished_at = SweepStatus.FINISHED, utcnow()
    session.flush()
    return sweep


def cancel_run(session: Session, run_id: int) -> Run:
    """Queued -> cancelled now; running -> cancel_requested (its worker stops it); else Conflict."""
    run = get_run(session, run_id)
    if _cancel_queued(session, Run.id == run_id):
        session.refresh(run)
        refresh_sweep_status(session, run.sweep_id)
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
    session.expire_all()
    refresh_sweep_status(session, sweep_id)
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
    for sweep_id in links.settle_links(session, ids):
        refresh_sweep_status(session, sweep_id)
    return ids


def retry_runs(session: Session, sweep_id: int, run_ids: Sequence[int] | None = None) -> list[int]:
    """Failed and cancelled runs of the sweep (or just `run_ids`) -> queued; ids to enqueue."""
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
    session.expire_all()
    if ids:
        refresh_sweep_status(session, sweep_id)
    return ids


# ---------------------------------------------------------------- metrics


def metric_keys(session: Session, run_id: int) -> list[str]:
    """Keys the run (or its reuse source) has recorded."""
    return sorted(latest_metrics(session, run_id))


def metric_series(
    session: Session,
    run_id: int,
    *,
    keys: Sequence[str] | None = None,
    after: int | None = None,
    max_points: int | None = None,
) -> tuple[int, dict[str, list[tuple[int, float]]]]:
    """(source run id, key -> [(step, value)...] by step), only steps > `after`, downsampled."""
    source = _source_id(session, run_id)
    query = select(Metric.key, Metric.step, Metric.value).where(Metric.run_id == source)
    if keys:
        query = query.where(Metric.key.in_(list(keys)))
    if after is not None:
        query = query.where(Metric.step > after)
    series: dict[str, list[tuple[int, float]]] = {key: [] for key in keys or ()}
    for key, step, value in session.execute(query.order_by(Metric.key, Metric.step)):
        series.setdefault(key, []).append((step, value))
    if max_points is not None:
        series = {key: downsample(points, max_points) for key, points in series.items()}
    return source, series


def downsample(points: list[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """At most `max_points` points that keep the curve's shape (min-max buckets).

    The first and last points are always kept. The points between are cut into
    (max_points - 2) // 2 buckets of equal count, and each bucket keeps its lowest and its
    highest value (in step order), so spikes and dips survive. Below 4 points per request
    there is no room for a bucket: first and last (or just the last) are returned.
    """
    if len(points) <= max_points:
        return points
    if max_points < 4:
        return points[-max_points:] if max_points < 2 else [points[0], points[-1]]
    inner = points[1:-1]
    buckets = (max_points - 2) // 2
    kept = [points[0]]
    for b in range(buckets):
        bucket = inner[b * len(inner) // buckets : (b + 1) * len(inner) // buckets]
        if not bucket:
            continue
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    kept.append(points[-1])
    return kept


# ---------------------------------------------------------------- table


def table_runs(
    session: Session, *, sweep_ids: Sequence[int] = (), run_ids: Sequence[int] = ()
) -> tuple[list[TableRun], list[str]]:
    """Rows for the comparison table (by sweep, then run id) and the matrix keys, in order.

    Raises NotFound naming any requested sweep or run that does not exist.
    """
    _require(session, Sweep, sweep_ids, "sweep")
    _require(session, Run, run_ids, "run")
    columns = (Run.id, Run.sweep_id, Run.matrix_id, Run.slug, Run.status, Run.params,
               Run.reused_from_id, Run.train_seconds)  # fmt: skip
    conditions = []
    if sweep_ids:
        conditions.append(Run.sweep_id.in_(list(sweep_ids)))
    if run_ids:
        conditions.append(Run.id.in_(list(run_ids)))
    if not conditions:
        return [], []
    query = select(*columns).where(or_(*conditions)).order_by(Run.sweep_id, Run.id)
    rows = list(session.execute(query))
    # A reused run, or one linked to a run still training, shows its source's results.
    source_of = {
        r.id: r.reused_from_id
        if r.status in (RunStatus.REUSED, RunStatus.QUEUED) and r.reused_from_id is not None
        else r.id
        for r in rows
    }
    metrics = _latest_by_run(session, set(source_of.values()))
    train_seconds = {r.id: r.train_seconds for r in rows}
    missing = set(source_of.values()) - set(train_seconds)
    if missing:
        query = select(Run.id, Run.train_seconds).where(Run.id.in_(missing))
        train_seconds.update({run_id: seconds for run_id, seconds in session.execute(query)})
    runs = [
        TableRun(
            run_id=r.id,
            sweep_id=r.sweep_id,
            matrix_id=r.matrix_id,
            slug=r.slug,
            status="linked"
            if source_of[r.id] != r.id and r.status == RunStatus.QUEUED
            else RunStatus(r.status).value,
            params=r.params or {},
            metrics=metrics.get(source_of[r.id], {}),
            reused_from_id=r.reused_from_id,
            train_seconds=train_seconds.get(source_of[r.id]),
        )
        for r in rows
    ]
    return runs, _matrix_keys(session, sorted({r.sweep_id for r in runs}))


def _require(
    session: Session, model: type[Sweep] | type[Run], ids: Sequence[int], what: str
) -> None:
    if not ids:
        return
    found = set(session.scalars(select(model.id).where(model.id.in_(list(ids)))))
    missing = sorted(set(ids) - found)
    if missing:
        names = ", ".join(map(str, missing))
        verb = "do not exist" if len(missing) > 1 else "does not exist"
        raise NotFound(f"{what}{'s' if len(missing) > 1 else ''} {names} {verb}")


def _latest_by_run(session: Session, run_ids: set[int]) -> dict[int, dict[str, tuple[int, float]]]:
    found: dict[int, dict[str, tuple[int, float]]] = defaultdict(dict)
    ids = sorted(run_ids)
    for start in range(0, len(ids), _CHUNK):
        # Plain tuples, not ORM objects: a 1,000-run table reads ~7,000 of these.
        query = select(
            LatestMetric.run_id, LatestMetric.key, LatestMetric.step, LatestMetric.value
        ).where(
            LatestMetric.run_id.in_(ids[start : start + _CHUNK]),
            LatestMetric.key.in_(TABLE_KEYS),
        )
        for run_id, key, step, value in session.execute(query):
            found[run_id][key] = (step, value)
    return found


def _matrix_keys(session: Session, sweep_ids: list[int]) -> list[str]:
    keys: dict[str, None] = {}
    query = select(Sweep.matrix_keys).where(Sweep.id.in_(sweep_ids)).order_by(Sweep.id)
    for sweep_keys in session.scalars(query):
        keys.update(dict.fromkeys(sweep_keys or []))
    return list(keys)
