"""Rows for the comparison table (shared.results_table builds and renders it)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.db.chunks import chunked
from shared.db.models import LatestMetric, Run, RunStatus, Sweep
from shared.domain.errors import NotFound
from shared.domain.metrics import value_or_null
from shared.domain.reads import source_of
from shared.results_table import TABLE_KEYS, TableRun


def table_runs(
    session: Session,
    *,
    sweep_ids: Sequence[int] = (),
    run_ids: Sequence[int] = (),
    extra_keys: Sequence[str] = (),
) -> tuple[list[TableRun], list[str]]:
    """Rows for the comparison table (by sweep, then run id) and the matrix keys, in order.

    `extra_keys`: metrics to read beside the table's own (`--include-column train_loss`).

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
    source = {r.id: source_of(r.id, r.status, r.reused_from_id) for r in rows}
    metrics = _latest_by_run(session, set(source.values()), (*TABLE_KEYS, *extra_keys))
    train_seconds = {r.id: r.train_seconds for r in rows}
    missing = set(source.values()) - set(train_seconds)
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
            if source[r.id] != r.id and r.status == RunStatus.QUEUED
            else r.status.value,
            params=r.params or {},
            metrics=metrics.get(source[r.id], {}),
            reused_from_id=r.reused_from_id,
            train_seconds=train_seconds.get(source[r.id]),
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


def _latest_by_run(
    session: Session, run_ids: set[int], keys: Sequence[str]
) -> dict[int, dict[str, tuple[int, float]]]:
    found: dict[int, dict[str, tuple[int, float]]] = defaultdict(dict)
    for chunk in chunked(sorted(run_ids)):
        # Plain tuples, not ORM objects: a large table reads several per run.
        query = select(
            LatestMetric.run_id, LatestMetric.key, LatestMetric.step, value_or_null(LatestMetric)
        ).where(
            LatestMetric.run_id.in_(chunk),
            LatestMetric.key.in_(list(keys)),
        )
        for run_id, key, step, value in session.execute(query):
            found[run_id][key] = (step, math.nan if value is None else value)
    return found


def _matrix_keys(session: Session, sweep_ids: list[int]) -> list[str]:
    keys: dict[str, None] = {}
    query = select(Sweep.matrix_keys).where(Sweep.id.in_(sweep_ids)).order_by(Sweep.id)
    for sweep_keys in session.scalars(query):
        keys.update(dict.fromkeys(sweep_keys or []))
    return list(keys)
