"""The comparison table with nn-experiments' table options, for the API, the UI and reports."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from shared.domain.table_rows import table_runs
from shared.results_table import Table
from shared.table_options import TableOptions, build


def options_table(
    session: Session,
    options: TableOptions,
    *,
    sweep_ids: Sequence[int] = (),
    run_ids: Sequence[int] = (),
) -> Table:
    """The table of these sweeps and runs, with `options` applied (TableOptionError if unfit)."""
    runs, keys = table_runs(
        session, sweep_ids=sweep_ids, run_ids=run_ids, extra_keys=options.metric_keys()
    )
    return build(runs, keys, options)
