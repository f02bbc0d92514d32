"""What a sweep's page shows: counts, a page of its table, its best runs, which curves.

A sweep of 10,000 runs is read as a person reads it: status counts, the best runs, one page
of the table, and the curves of the best few (views.curve_choice), not everything at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from api.ui import views
from api.ui.table_form import table_with_options
from shared.db.models import LIVE_STATUSES, RETRYABLE_STATUSES, RunStatus
from shared.domain import reads
from shared.domain.table_rows import table_runs
from shared.results_table import page_of, page_rows, prepare
from shared.table_options import TableOptions

TABLE_PAGE = 100  # rows of a sweep's table per page
BEST_ROWS = 10  # the "best runs" table above a paged one


def sweep_context(
    db: Session,
    sweep_id: int,
    options: TableOptions,
    page: int = 1,
    *,
    all_curves: bool = False,
) -> dict[str, Any]:
    sweep = reads.get_sweep(db, sweep_id)
    runs, param_keys = table_runs(db, sweep_ids=[sweep_id], extra_keys=options.metric_keys())
    table, form = table_with_options(runs, param_keys, options)
    page = max(1, page)
    shown = page_rows(table, TABLE_PAGE, (page - 1) * TABLE_PAGE)
    summary = reads.summarize(db, [sweep])[0]
    counts = summary.counts
    live = sum(counts.get(status.value, 0) for status in LIVE_STATUSES)
    retryable = (*RETRYABLE_STATUSES, RunStatus.HELD)
    # One ranking serves the "best runs" table and the choice of curves.
    ranked = page_of(prepare(runs, param_keys), sort=views.BEST_BY, limit=views.CURVE_RUNS)
    paged = len(table.rows) > TABLE_PAGE
    best = replace(ranked, rows=ranked.rows[:BEST_ROWS]) if paged else None
    return {
        "sweep": sweep,
        "table": views.table_view(shown),
        "raw_table": table,
        "options_form": form,
        "pager": views.pager(shown, page, TABLE_PAGE, form.query),
        "best": views.table_view(best) if best is not None else None,
        "runs": runs,
        "param_keys": param_keys,
        "curves": views.curve_choice(sweep_id, runs, ranked, all_curves=all_curves),
        "counts": views.sweep_row(summary)["counts"],
        "progress": views.progress_fraction(summary),
        "created": views.when(sweep.created_at),
        "finished": views.when(sweep.finished_at),
        "active": bool(live),
        "can_cancel": bool(live),
        "can_retry": any(counts.get(s.value) for s in retryable),
    }


def flash_text(cancelled: int | None, stopping: int | None, retried: int | None) -> str | None:
    """The line shown after a cancel or retry."""
    if retried is not None:
        return f"Queued {retried} run{'s' if retried != 1 else ''} again."
    if cancelled is not None or stopping is not None:
        return (
            f"Cancelled {cancelled or 0} queued run{'s' if cancelled != 1 else ''}; "
            f"asked {stopping or 0} running run{'s' if stopping != 1 else ''} to stop."
        )
    return None
