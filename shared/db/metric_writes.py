"""Metric points written by the worker: long-form rows and each key's latest value.

Both are idempotent upserts, so a retried flush or a run resumed from a checkpoint writes a
point twice without harm. Functions take `session` and never commit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db.models import LatestMetric, Metric

MetricPoint = tuple[str, int, float]


def upsert_metrics(session: Session, run_id: int, points: Iterable[MetricPoint]) -> int:
    """Write (key, step, value) points idempotently; returns the number of distinct points.

    A point written twice (a retried flush, a run resumed from a checkpoint) overwrites itself.
    `latest_metrics` moves only forward: an older step never replaces a newer one. A NaN is
    stored as value 0 with `is_nan` set, on both databases (SQLite would read a NaN REAL back
    as NULL, which the NOT NULL column refuses); an infinity is stored as it is.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    # Last value wins within a batch; Postgres refuses to update one row twice in a statement.
    unique: dict[tuple[str, int], float] = {}
    for key, step, value in points:
        unique[(str(key), int(step))] = float(value)
    if not unique:
        return 0
    keys = [key for key, _ in unique]
    steps = [step for _, step in unique]
    nans = [math.isnan(value) for value in unique.values()]
    values = [0.0 if nan else value for value, nan in zip(unique.values(), nans, strict=True)]
    if postgres:
        # One statement of four arrays: one round trip per flush, and faster than
        # executemany (BENCHMARKS.md).
        session.execute(
            _PG_UPSERT_METRICS,
            {"run_id": run_id, "keys": keys, "steps": steps, "values": values, "nans": nans},
        )
    else:
        stmt = sqlite.insert(Metric)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "key", "step"],
            set_={"value": stmt.excluded.value, "is_nan": stmt.excluded.is_nan},
        )
        rows = [
            {"run_id": run_id, "key": k, "step": s, "value": v, "is_nan": n}
            for k, s, v, n in zip(keys, steps, values, nans, strict=True)
        ]
        session.execute(stmt, rows)
    _upsert_latest(session, run_id, zip(keys, steps, values, nans, strict=True), postgres=postgres)
    return len(values)


_PG_UPSERT_METRICS = text(
    "INSERT INTO metrics (run_id, key, step, value, is_nan) "
    "SELECT :run_id, k, s, v, n FROM unnest(CAST(:keys AS text[]), CAST(:steps AS bigint[]), "
    "CAST(:values AS float8[]), CAST(:nans AS boolean[])) AS p(k, s, v, n) "
    "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan"
)


def _upsert_latest(
    session: Session,
    run_id: int,
    points: Iterable[tuple[str, int, float, bool]],
    *,
    postgres: bool,
) -> None:
    latest: dict[str, tuple[int, float, bool]] = {}
    for key, step, value, nan in points:
        best = latest.get(key)
        if best is None or step >= best[0]:
            latest[key] = (step, value, nan)
    insert = postgresql.insert if postgres else sqlite.insert
    stmt = insert(LatestMetric).values(
        [
            {"run_id": run_id, "key": k, "step": s, "value": v, "is_nan": n}
            for k, (s, v, n) in sorted(latest.items())
        ]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "step": stmt.excluded.step,
            "value": stmt.excluded.value,
            "is_nan": stmt.excluded.is_nan,
        },
        where=LatestMetric.step <= stmt.excluded.step,
    )
    session.execute(stmt)
