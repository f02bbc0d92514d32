"""The sweep page's table options form.

The form is a plain GET form: its fields are the query parameters of GET /sweeps/{id}/table
(`include`, `exclude`, `sort`, `average`, `average_std`), so a table the page shows can be
bookmarked, and the downloads and the live refresh carry the same options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from shared.metric_keys import METRIC_KEYS
from shared.results_table import Table, TableRun, build_table
from shared.table_options import TableOptionError, TableOptions, build


@dataclass(frozen=True)
class OptionsForm:
    """What the form offers and what is chosen; `query` repeats the choice in links."""

    options: TableOptions
    query: str
    error: str | None
    matrix_keys: list[str]
    columns: list[str]  # of the table shown: to exclude, to sort by
    metric_columns: list[str]  # to show as mean ± std
    more_metrics: list[str] = field(default_factory=list)  # stored, not shown: to include


def options_query(options: TableOptions) -> str:
    """'?include=a&sort=-b' (or '') for links that keep the options."""
    pairs = [("include", n) for n in options.include] + [("exclude", n) for n in options.exclude]
    pairs += [("sort", n) for n in options.sort]
    if options.average:
        pairs.append(("average", options.average))
    pairs += [("average_std", n) for n in options.average_std]
    return f"?{urlencode(pairs)}" if pairs else ""


def table_with_options(
    runs: list[TableRun], param_keys: list[str], options: TableOptions
) -> tuple[Table, OptionsForm]:
    """The table the options ask for; the plain table and the reason when they do not fit."""
    error = None
    try:
        table = build(runs, param_keys, options)
    except TableOptionError as exc:
        table, error = build_table(runs, param_keys), str(exc)
    shown = {c.key for c in table.columns} | {c.name for c in table.columns}
    stored = sorted({key for run in runs for key in run.metrics} | set(METRIC_KEYS))
    form = OptionsForm(
        options=options,
        query=options_query(options),
        error=error,
        matrix_keys=param_keys,
        columns=[c.name for c in table.columns],
        metric_columns=[c.name for c in table.columns if c.kind == "metric"],
        more_metrics=[key for key in stored if key not in shown],
    )
    return table, form
