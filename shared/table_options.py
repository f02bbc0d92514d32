"""The table options of nn-experiments' `results` command, on top of shared.results_table.

- include: more columns; any stored metric by its key (`train_loss`), or a column already shown;
- exclude: columns to drop, by header or key;
- sort: several columns, the first one deciding first; a leading or trailing `-` sorts that
  column descending; rows without a value go last;
- average: a matrix key (`trial`) to average over, one row per configuration
  (shared/table_average.py);
- average_std: the columns whose cells read `mean ± std` in an averaged table.

A name is a header (`accuracy (svc)`), a metric key (`accuracy_svc`) or a matrix key. A sort
column may also be part of one header, as in the original (`-sc validation` sorts by
`validation loss (N steps)`): exact names win, then the first header that contains the name.
Unknown names are refused with the list of known ones; nothing is silently ignored (the
original skips an unknown `--exclude-column`; here it is an error, as a typo would otherwise
leave the column in the published table unnoticed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from shared.metric_keys import METRIC_KEYS, VALIDATION_LOSS
from shared.results_table import (
    Column,
    Row,
    Table,
    TableRun,
    build_table,
    format_cell,
    sort_rows,
    to_csv,
    to_json,
    to_markdown,
)
from shared.table_average import (
    TableOptionError,
    average_rows,
    averaged_csv,
    averaged_json,
    is_averaged,
)

__all__ = ["TableOptionError", "TableOptions", "build", "find_column", "render"]


@dataclass(frozen=True)
class TableOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sort: tuple[str, ...] = ()
    average: str | None = None
    average_std: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        include: Any = (),
        exclude: Any = (),
        sort: Any = (),
        average: str | None = None,
        average_std: Any = (),
    ) -> TableOptions:
        """From lists or None (query parameters, CLI options); blank names are dropped."""

        def clean(names: Any) -> tuple[str, ...]:
            return tuple(n.strip() for n in (names or ()) if n and n.strip())

        average = average.strip() if average else None
        return cls(clean(include), clean(exclude), clean(sort), average or None, clean(average_std))

    def metric_keys(self) -> tuple[str, ...]:
        """Included names that may be stored metrics beyond the table's own (to read them)."""
        return tuple(name for name in self.include if name.isidentifier())


def find_column(columns: list[Column], name: str, purpose: str, *, partial: bool = False) -> Column:
    """The column `name` means (see the module docstring); TableOptionError naming it if none.

    `partial`: a part of a header will do (sorting, as the original allows).
    """
    for column in columns:
        if name in (column.name, column.key) or name == column.key.removeprefix("param:"):
            return column
        if column.key == VALIDATION_LOSS and name == "validation loss":
            return column
    for column in columns:
        if partial and name and name in column.name:
            return column
    known = ", ".join(repr(c.name) for c in columns)
    raise TableOptionError(
        f"cannot {purpose} {name[:100]!r}: it is not a column; choose one of {known}"
    )


def build(runs: list[TableRun], param_keys: list[str], options: TableOptions) -> Table:
    """The table with the options applied: include, average, sort, then exclude.

    `runs` carry the metrics `options.metric_keys()` names where they were stored.
    """
    if options.average is not None and options.average not in param_keys:
        matrix = ", ".join(param_keys) or "no keys"
        key = options.average[:100]
        raise TableOptionError(
            f"cannot average over {key!r}: it is not a matrix key (the matrix has {matrix}); "
            f"add e.g. `{key}: [1, 2, 3]` to the matrix"
        )
    table = build_table(runs, param_keys)
    stored = {key for run in runs for key in run.metrics}
    table = _include(table, options.include, set(METRIC_KEYS) | stored)
    if options.average is not None:
        std = [find_column(table.columns, n, "show the std of") for n in options.average_std]
        table = average_rows(table, options.average, std)
    elif options.average_std:
        raise TableOptionError("--average-column-std needs --average-column (e.g. -ac trial)")
    table = _sort(table, options.sort)
    return _exclude(table, options.exclude)


def _include(table: Table, names: tuple[str, ...], known: set[str]) -> Table:
    columns, added = list(table.columns), []
    for name in names:
        if any(name in (c.name, c.key) for c in columns):
            continue  # already shown
        if name not in known:
            shown = ", ".join(repr(c.name) for c in columns)
            metrics = ", ".join(sorted(known))
            raise TableOptionError(
                f"cannot include {name[:100]!r}: it is neither a column ({shown}) "
                f"nor a stored metric ({metrics})"
            )
        column = Column(name, name, "metric")
        columns.append(column)
        added.append(column)
    if not added:
        return table
    rows = [_with_metrics(row, added) for row in table.rows]
    return replace(table, columns=columns, rows=rows)


def _with_metrics(row: Row, added: list[Column]) -> Row:
    values, cells = dict(row.values), dict(row.cells)
    for column in added:
        point = row.run.metrics.get(column.key)
        values[column.name] = None if point is None else point[1]
        cells[column.name] = format_cell(column, values[column.name])
    return replace(row, values=values, cells=cells)


def sort_spec(name: str) -> tuple[str, bool]:
    """'-acc' or 'acc-' -> ('acc', True): the column and whether it sorts descending."""
    if name.startswith("-"):
        return name[1:].strip(), True
    if name.endswith("-"):
        return name[:-1].strip(), True
    return name, False


def _sort(table: Table, names: tuple[str, ...]) -> Table:
    rows = list(table.rows)
    # Stable sorts from the last column to the first: the first named decides first.
    for name in reversed(names):
        wanted, descending = sort_spec(name)
        column = find_column(table.columns, wanted, "sort by", partial=True)
        rows = sort_rows(rows, column.name, descending)
    return replace(table, rows=rows, sort=names[0] if names else table.sort)


def _exclude(table: Table, names: tuple[str, ...]) -> Table:
    dropped = {find_column(table.columns, name, "exclude").name for name in names}
    if not dropped:
        return table
    columns = [c for c in table.columns if c.name not in dropped]
    rows = [
        replace(
            row,
            values={k: v for k, v in row.values.items() if k not in dropped},
            cells={k: v for k, v in row.cells.items() if k not in dropped},
            best=tuple(name for name in row.best if name not in dropped),
        )
        for row in table.rows
    ]
    return replace(table, columns=columns, rows=rows)


def render(table: Table, fmt: str, options: TableOptions) -> str | dict[str, Any]:
    """Markdown or CSV text, or the JSON document (with the options), of a table."""
    averaged = is_averaged(table)
    if fmt == "md":
        return to_markdown(table)
    if fmt == "csv":
        return averaged_csv(table) if averaged else to_csv(table)
    document = averaged_json(table) if averaged else to_json(table)
    document["options"] = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in asdict(options).items()
    }
    return document
