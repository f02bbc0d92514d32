"""What a run's metrics look like now, in a few words: the basis of the API's ETags.

A finished run's points never change (a retry changes its status and attempts first), so its
row alone names its series. An unfinished run's points arrive with every worker flush, and
each flush renews the lease in the same transaction (`worker.reporter.Reporter.flush`), so
`heartbeat_at` moves with them; the points' count and last step are added so that writes
from any other path change the version too. A resumed attempt re-writing steps it had
already written bumps `attempts` and `heartbeat_at`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, RunStatus


def metrics_version(session: Session, source_ids: Iterable[int]) -> str:
    """A string that changes whenever any of these runs' metric points may have changed."""
    ids = sorted(set(source_ids))
    if not ids:
        return "none"
    rows = session.execute(
        select(Run.id, Run.status, Run.attempts, Run.finished_at, Run.heartbeat_at)
        .where(Run.id.in_(ids))
        .order_by(Run.id)
    ).all()
    unfinished = [row.id for row in rows if not RunStatus(row.status).finished]
    counts: dict[int, tuple[int, int | None]] = {}
    if unfinished:
        query = (
            select(Metric.run_id, func.count(), func.max(Metric.step))
            .where(Metric.run_id.in_(unfinished))
            .group_by(Metric.run_id)
        )
        counts = {run_id: (n, last) for run_id, n, last in session.execute(query)}
    parts = []
    for row in rows:
        part = f"{row.id}:{RunStatus(row.status).value}:{row.attempts}:{row.finished_at}"
        if row.id in unfinished:
            part += f":{row.heartbeat_at}:{counts.get(row.id, (0, None))}"
        parts.append(part)
    return ";".join(parts)
