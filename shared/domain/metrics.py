"""One run's metrics: latest values, series, and the min-max downsampling rule.

A reused run shows its source's metrics (`reads.source_id`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import LatestMetric, Metric
from shared.domain.reads import source_id


def latest_metrics(session: Session, run_id: int) -> dict[str, tuple[int, float]]:
    """key -> (step, value) of the run's results (its source's, for a reused run)."""
    source = source_id(session, run_id)
    query = select(LatestMetric.key, LatestMetric.step, LatestMetric.value).where(
        LatestMetric.run_id == source
    )
    return {key: (step, value) for key, step, value in session.execute(query)}


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
    source = source_id(session, run_id)
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
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    kept.append(points[-1])
    return kept
