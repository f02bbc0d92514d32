"""Learning curves for many runs at once, in a few SQL queries, downsampled to `max_points`.

The sweep page draws five charts with one line per run; asking GET /runs/{id}/metrics once
per run would cost hundreds of round trips for a large sweep. Here one query reads the runs,
one counts the points of each (run, key), one reads the series that fit in `max_points` or
are at most READ_WHOLE_FACTOR times longer (those are bucketed here), and one reads the
longest ones downsampled by window functions inside the database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, null, or_, select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, Sweep
from shared.domain.metrics import downsample, value_or_null
from shared.domain.reads import source_of
from shared.metric_keys import CURVE_KEYS

MAX_POINTS_LIMIT = 5_000
# Series up to this many times max_points are read whole and bucketed in Python.
READ_WHOLE_FACTOR = 8


@dataclass(frozen=True)
class CurveRun:
    id: int
    sweep_id: int
    slug: str
    status: str
    finished: bool
    source_id: int  # the run whose metrics are drawn: itself, or the run it reuses

    def to_json(self, label: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "sweep_id": self.sweep_id,
            "slug": self.slug,
            "label": label,
            "status": self.status,
            "finished": self.finished,
        }


def load_runs(
    session: Session, *, sweep_ids: Iterable[int] = (), run_ids: Iterable[int] = ()
) -> list[CurveRun]:
    """The runs of these sweeps plus these single runs, ordered by id, without duplicates."""
    sweep_ids, run_ids = list(sweep_ids), list(run_ids)
    if not sweep_ids and not run_ids:
        return []
    rows = session.execute(
        select(Run.id, Run.sweep_id, Run.slug, Run.status, Run.reused_from_id)
        .where(or_(Run.sweep_id.in_(sweep_ids), Run.id.in_(run_ids)))
        .order_by(Run.id)
    ).all()
    return [
        CurveRun(
            id=row.id,
            sweep_id=row.sweep_id,
            slug=row.slug,
            status=row.status.value,
            finished=row.status.finished,
            source_id=source_of(row.id, row.status, row.reused_from_id),
        )
        for row in rows
    ]


def read_series(
    session: Session,
    source_ids: Iterable[int],
    *,
    keys: Iterable[str] = CURVE_KEYS,
    after: Mapping[int, int] | None = None,
    max_points: int = 500,
) -> dict[int, dict[str, tuple[list[int], list[float | None]]]]:
    """{source run id: {key: (steps, values)}}, points after `after[run]`, downsampled."""
    source_ids, keys, after = sorted(set(source_ids)), list(keys), after or {}
    if not source_ids or not keys:
        return {}
    max_points = max(4, min(int(max_points), MAX_POINTS_LIMIT))
    fresh = [rid for rid in source_ids if rid not in after]
    scope: list[ColumnElement[bool]] = [Metric.run_id.in_(fresh)] if fresh else []
    scope += [and_(Metric.run_id == rid, Metric.step > step) for rid, step in after.items()]
    wanted = and_(Metric.key.in_(keys), or_(*scope))
    # Counting first (an index-only scan) sorts the series three ways: those that fit in
    # max_points are read as they are; those up to READ_WHOLE_FACTOR times longer are read
    # whole and bucketed here, which costs less than the database's window functions
    # (BENCHMARKS.md, "UI"); only longer ones are bucketed inside the database.
    plain: dict[str, list[int]] = {}
    long: dict[str, list[int]] = {}
    bucket_here: set[tuple[int, str]] = set()
    counts = select(Metric.run_id, Metric.key, func.count()).where(wanted)
    for run_id, key, n in session.execute(counts.group_by(Metric.run_id, Metric.key)):
        if n > READ_WHOLE_FACTOR * max_points:
            long.setdefault(key, []).append(run_id)
            continue
        plain.setdefault(key, []).append(run_id)
        if n > max_points:
            bucket_here.add((run_id, key))
    reads = []
    if plain:
        columns = (Metric.run_id, Metric.key, Metric.step)
        query = select(*columns, value_or_null(Metric)).where(wanted, _pairs(plain))
        reads.append(query.order_by(*columns))
    if long:
        reads.append(_downsampled(and_(wanted, _pairs(long)), max_points))
    raw: dict[tuple[int, str], list[tuple[int, float | None]]] = {}
    for read in reads:
        for run_id, key, step, value in session.execute(read):
            raw.setdefault((run_id, key), []).append((step, value))
    series: dict[int, dict[str, tuple[list[int], list[float | None]]]] = {}
    for (run_id, key), points in raw.items():
        if (run_id, key) in bucket_here:
            points = downsample(points, max_points)
        # A diverged run's NaN/inf is not JSON; null leaves a gap in its line.
        series.setdefault(run_id, {})[key] = (
            [step for step, _ in points],
            [value if value is not None and math.isfinite(value) else None for _, value in points],
        )
    return series


def _pairs(run_ids_by_key: dict[str, list[int]]) -> Any:
    return or_(
        *(and_(Metric.key == k, Metric.run_id.in_(ids)) for k, ids in run_ids_by_key.items())
    )


def _downsampled(where: Any, max_points: int) -> Select[Any]:
    """Min-max buckets in SQL, as shared.domain.metrics.downsample does in Python.

    Per (run, key) series longer than `max_points`: keep the first and the last point, cut
    the points between into (max_points - 2) // 2 buckets of equal count, keep each bucket's
    lowest and highest value. Spikes survive; at most `max_points` rows per series leave the
    database, so a long train_loss series costs the network nothing.
    """
    series = (Metric.run_id, Metric.key)
    numbered = (
        select(
            Metric.run_id,
            Metric.key,
            Metric.step,
            Metric.value,
            Metric.is_nan,
            func.row_number().over(partition_by=series, order_by=Metric.step).label("rn"),
            func.count().over(partition_by=series).label("n"),
        )
        .where(where)
        .subquery()
    )
    buckets = (max_points - 2) // 2
    ends = or_(numbered.c.rn == 1, numbered.c.rn == numbered.c.n)
    # Interior point i (= rn - 2) of m (= n - 2) falls in bucket ceil((i + 1) * B / m) - 1,
    # the same split as metrics.downsample's inner[b*m//B : (b+1)*m//B].
    interior = numbered.c.n - 2
    bucket = case((ends, -1), else_=((numbered.c.rn - 1) * buckets - 1) // interior)
    in_bucket = (numbered.c.run_id, numbered.c.key, bucket)
    # A NaN (stored as 0 with is_nan) ranks lowest, as in metrics.downsample.
    nan, value, step = numbered.c.is_nan, numbered.c.value, numbered.c.step
    ranked = select(
        numbered,
        func.row_number()
        .over(partition_by=in_bucket, order_by=(nan.desc(), value, step))
        .label("low"),
        func.row_number()
        .over(partition_by=in_bucket, order_by=(nan, value.desc(), step))
        .label("high"),
    ).subquery()
    keep = or_(
        ranked.c.n <= max_points,
        ranked.c.rn == 1,
        ranked.c.rn == ranked.c.n,
        ranked.c.low == 1,
        ranked.c.high == 1,
    )
    shown = case((ranked.c.is_nan, null()), else_=ranked.c.value)
    return (
        select(ranked.c.run_id, ranked.c.key, ranked.c.step, shown)
        .where(keep)
        .order_by(ranked.c.run_id, ranked.c.key, ranked.c.step)
    )


def curves_payload(
    session: Session,
    runs: list[CurveRun],
    *,
    after: Mapping[int, int] | None = None,
    max_points: int = 500,
) -> dict[str, Any]:
    """The JSON the charts draw: runs (with legend labels) and series[key][run id]."""
    # `after` is keyed by the run shown; the metrics live under its source run.
    source_after = {r.source_id: after[r.id] for r in runs if after and r.id in after}
    by_source = read_series(
        session, {r.source_id for r in runs}, after=source_after, max_points=max_points
    )
    labels = _labels(session, runs)
    series: dict[str, dict[int, list[list[Any]]]] = {key: {} for key in CURVE_KEYS}
    for run in runs:
        for key, (steps, values) in by_source.get(run.source_id, {}).items():
            series[key][run.id] = [steps, values]
    return {
        "runs": [run.to_json(labels[run.id]) for run in runs],
        "series": series,
        "max_points": max_points,
    }


def _labels(session: Session, runs: list[CurveRun]) -> dict[int, str]:
    """The slug, prefixed with the sweep's name when runs come from several sweeps."""
    sweep_ids = {r.sweep_id for r in runs}
    if len(sweep_ids) <= 1:
        return {r.id: r.slug for r in runs}
    names = dict(session.execute(select(Sweep.id, Sweep.name).where(Sweep.id.in_(sweep_ids))).all())
    return {r.id: f"{names.get(r.sweep_id, r.sweep_id)} · {r.slug}" for r in runs}


def parse_after(text: str | None) -> dict[int, int]:
    """`12:3000,13:-1` -> {12: 3000, 13: -1}; raises ValueError naming the bad item."""
    cursors: dict[int, int] = {}
    for item in filter(None, (text or "").split(",")):
        run, sep, step = item.partition(":")
        try:
            if not sep:
                raise ValueError
            cursors[int(run)] = int(step)
        except ValueError:
            raise ValueError(f"after: expected RUN:STEP pairs, got {item!r}") from None
    return cursors
