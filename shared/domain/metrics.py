"""One run's metrics: latest values, series, and the min-max downsampling rule.

A reused run shows its source's metrics (`reads.source_id`). A NaN is stored as value 0 with
`is_nan` set (`shared.db.metric_writes.upsert_metrics`); reads give it back as NaN (latest values,
tables) or as None (series, which become JSON), and `non_finite` names NaN and infinities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, case, null, select
from sqlalchemy.orm import Session

from shared.db.models import LatestMetric, Metric
from shared.domain.reads import source_id

Point = tuple[int, float | None]  # (step, value); None for a NaN
NonFinite = Literal["NaN", "Infinity", "-Infinity"]
AnySelect = Select[*tuple[Any, ...]]


def value_or_null(model: type[Metric] | type[LatestMetric]) -> ColumnElement[float | None]:
    """The stored value, NULL for a NaN (stored as 0 with `is_nan`)."""
    return case((model.is_nan, null()), else_=model.value)


def non_finite_name(value: float | None) -> NonFinite | None:
    """JSON has no NaN or infinity: "NaN", "Infinity" or "-Infinity" names them (None: finite)."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return None


def latest_metrics(session: Session, run_id: int) -> dict[str, tuple[int, float]]:
    """key -> (step, value) of the run's results (its source's, for a reused run); NaN kept."""
    source = source_id(session, run_id)
    query = select(LatestMetric.key, LatestMetric.step, value_or_null(LatestMetric)).where(
        LatestMetric.run_id == source
    )
    return {
        key: (step, math.nan if value is None else value)
        for key, step, value in session.execute(query)
    }


def metric_keys(session: Session, run_id: int) -> list[str]:
    """Keys the run (or its reuse source) has recorded."""
    return sorted(latest_metrics(session, run_id))


@dataclass
class Series:
    """A run's curves: key -> [(step, value), ...] in step order, NaN as None."""

    source_id: int
    points: dict[str, list[Point]]
    # key -> [(step, "NaN" | "Infinity" | "-Infinity"), ...]: every non-finite point asked for,
    # also those that downsampling left out, so a diverged run is never shown as a clean one.
    non_finite: dict[str, list[tuple[int, NonFinite]]] = field(default_factory=dict)

    @property
    def last_step(self) -> int | None:
        return max((p[-1][0] for p in self.points.values() if p), default=None)


def metric_series(
    session: Session,
    run_id: int,
    *,
    keys: Sequence[str] | None = None,
    after: int | None = None,
    max_points: int | None = None,
    source: int | None = None,
) -> Series:
    """The run's series (its source's, if reused, or `source` when known), steps > `after`.

    One query; its rows come from the database driver as plain tuples and are grouped by key
    into (step, value) pairs that are serialised as they are: per-point pydantic models and
    dicts were most of a full series' cost, and on a busy host each extra round trip to the
    database costs more than the whole grouping (BENCHMARKS.md, "Load").
    """
    source = source_id(session, run_id) if source is None else source
    query = select(Metric.key, Metric.step, value_or_null(Metric)).where(Metric.run_id == source)
    if keys:
        query = query.where(Metric.key.in_(list(keys)))
    if after is not None:
        query = query.where(Metric.step > after)
    rows = driver_tuples(session, query.order_by(Metric.key, Metric.step))
    points: dict[str, list[Point]] = {key: [] for key in keys or ()}
    for key, group in groupby(rows, itemgetter(0)):
        pairs = [row[1:] for row in group]
        points[key] = pairs if max_points is None else downsample(pairs, max_points)
    series = Series(source_id=source, points=points)
    # NULL is a NaN; a float outside (-inf, inf) an infinity (or a NaN stored before is_nan).
    for key, step, value in rows:
        if value is None or not -math.inf < value < math.inf:
            series.non_finite.setdefault(key, []).append((step, non_finite_name(value) or "NaN"))
    return series


def driver_tuples(session: Session, query: AnySelect) -> list[Any]:
    """The rows as the DB-API driver returns them (plain tuples), without SQLAlchemy's Row.

    Only for queries whose parameters and columns need no type conversion (ints, strings,
    floats).
    """
    connection = session.connection()
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    params: Any = compiled.params
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup or ())
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _rank(point: Point) -> float:
    # A NaN ranks lowest, so a bucket that holds one keeps it (the chart shows the gap) and
    # still keeps its highest number; curves._downsampled orders the same way.
    return -math.inf if point[1] is None else point[1]


def downsample(points: list[Point], max_points: int) -> list[Point]:
    """At most `max_points` points that keep the curve's shape (min-max buckets).

    The first and last points are always kept. The points between are cut into
    (max_points - 2) // 2 buckets of equal count, and each bucket keeps its lowest and its
    highest value (in step order), so spikes and dips survive. Below 4 points per request
    there is no room for a bucket: first and last (or just the last) are returned.
    `curves._downsampled` is the same rule in SQL.
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
        low = min(bucket, key=_rank)
        high = max(bucket, key=_rank)
        kept.extend(sorted({low, high}, key=lambda p: p[0]))
    kept.append(points[-1])
    return kept
