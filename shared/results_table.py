"""The seed's comparison table: one row per run, as JSON, Markdown or CSV. Pure Python, no DB.

Columns: `run` (and `sweep` when rows span sweeps), `status`, the matrix parameters, then
`validation loss (N steps)` (N = inputs at the last validation, the most common N across rows;
a row validated at another N shows it in its cell, as the seed's table does), `accuracy
(argmax)`, `accuracy (svc)`, `accuracy (svc held-out)`, `model params`, `train time`,
`throughput`. A reused run shows its source run's results. Markdown right-aligns numbers and
puts the best value of each quality column in bold (lowest loss, highest accuracy); CSV holds
the raw numbers (no separators, no bold) plus a `validation inputs` column, for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from shared import metric_keys as mk


@dataclass(frozen=True)
class TableRun:
    """What one row needs; for a reused run, `metrics`/`train_seconds` are its source's."""

    run_id: int
    sweep_id: int
    matrix_id: str
    slug: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, tuple[int, float]]  # key -> (step, value), the latest of each key
    reused_from_id: int | None = None
    train_seconds: float | None = None


@dataclass(frozen=True)
class Column:
    name: str  # the header
    key: str  # stable id: "run", "sweep", "status", "param:<name>", or a metric key
    kind: str  # "info", "param" or "metric"
    best: str | None = None  # "min" or "max": the column's best value is bold


@dataclass(frozen=True)
class Row:
    run: TableRun
    values: dict[str, Any]  # column name -> raw value (None when missing)
    validation_inputs: int | None
    cells: dict[str, str] = field(default_factory=dict)  # column name -> text (no bold)
    best: tuple[str, ...] = ()  # columns where this row holds the best value
    group: Any = None  # an averaged row's runs and statistics (shared/table_average.py)


@dataclass(frozen=True)
class Table:
    columns: list[Column]
    rows: list[Row]
    sort: str | None = None
    total: int | None = None  # rows before paging (build_table's limit/offset)
    offset: int = 0
    average: str | None = None  # the matrix key the rows average over (shared/table_average.py)


_VALIDATION = mk.VALIDATION_LOSS
# (header, metric key, best direction) after the validation loss column
_METRIC_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("accuracy (argmax)", mk.ACCURACY_ARGMAX, "max"),
    ("accuracy (svc)", mk.ACCURACY_SVC, "max"),
    ("accuracy (svc held-out)", mk.ACCURACY_SVC_HELDOUT, "max"),
    ("model params", mk.MODEL_PARAMS, None),
    ("train time", mk.TRAIN_SECONDS, None),
    ("throughput", mk.THROUGHPUT, None),
)
# A metric column's header by its key.
METRIC_HEADERS = {key: header for header, key, _ in _METRIC_COLUMNS}
# Shown only where a run has no validation loss (a file without validation_set).
_TRAIN = mk.TRAIN_LOSS
# The metric keys a table shows.
TABLE_KEYS = (_VALIDATION, _TRAIN, *(key for _, key, _ in _METRIC_COLUMNS))
_FIXED_NAMES = {"run", "sweep", "status", "validation loss", "train loss"} | {
    c[0] for c in _METRIC_COLUMNS
}


class UnknownColumn(ValueError):
    """A sort column that is not in the table; the message lists the ones that are."""


def build_table(
    runs: list[TableRun],
    param_keys: list[str],
    *,
    sort: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Table:
    """Rows for `runs`, in order, or by `sort` (a column name or key; '-' for descending).

    `limit`/`offset` page the rows after sorting; best values are the whole table's, and only
    the page's cells are formatted (a 10,000-run sweep's first page costs little).
    """
    return page_of(prepare(runs, param_keys), sort=sort, limit=limit, offset=offset)


@dataclass(frozen=True)
class Prepared:
    """Every row's values and best marks, before sorting, paging and formatting: what several
    pages (or orders) of one table share."""

    columns: list[Column]
    rows: list[Row]
    common: int | None  # the most common validation step


def prepare(runs: list[TableRun], param_keys: list[str]) -> Prepared:
    steps = [r.metrics[_VALIDATION][0] for r in runs if _VALIDATION in r.metrics]
    common = _most_common(steps)
    columns = _columns(runs, param_keys, common)
    rows = mark_best([_row(run, columns) for run in runs], columns)
    return Prepared(columns, rows, common)


def page_rows(table: Table, limit: int | None, offset: int = 0) -> Table:
    """One page of a built table's rows (its cells already formatted), with the total."""
    end = None if limit is None else offset + limit
    return replace(table, rows=table.rows[offset:end], total=len(table.rows), offset=offset)


def page_of(
    prepared: Prepared, *, sort: str | None = None, limit: int | None = None, offset: int = 0
) -> Table:
    """One page of the prepared table, in run order or by `sort`, with its cells formatted."""
    rows = _sorted(prepared.rows, prepared.columns, sort) if sort else prepared.rows
    page = rows[offset:] if limit is None else rows[offset : offset + limit]
    page = [_with_cells(row, prepared.columns, prepared.common) for row in page]
    return Table(columns=prepared.columns, rows=page, sort=sort, total=len(rows), offset=offset)


def _most_common(steps: list[int]) -> int | None:
    if not steps:
        return None
    counts = Counter(steps)
    return max(counts, key=lambda step: (counts[step], step))


def _columns(runs: list[TableRun], param_keys: list[str], common: int | None) -> list[Column]:
    columns = [Column("run", "run", "info")]
    if len({r.sweep_id for r in runs}) > 1:
        columns.append(Column("sweep", "sweep", "info"))
    columns.append(Column("status", "status", "info"))
    for key in param_keys:
        # A matrix key may collide with a fixed header; keep both distinguishable.
        name = f"{key} (param)" if key in _FIXED_NAMES else key
        columns.append(Column(name, f"param:{key}", "param"))
    loss = "validation loss" if common is None else f"validation loss ({common:,} steps)"
    columns.append(Column(loss, _VALIDATION, "metric", "min"))
    if any(_VALIDATION not in r.metrics and _TRAIN in r.metrics for r in runs):
        columns.append(Column("train loss", _TRAIN, "metric", "min"))
    columns.extend(Column(name, key, "metric", best) for name, key, best in _METRIC_COLUMNS)
    return columns


def _value(run: TableRun, column: Column) -> Any:
    if column.key == "run":
        return run.run_id
    if column.key == "sweep":
        return run.sweep_id
    if column.key == "status":
        return run.status
    if column.kind == "param":
        return run.params.get(column.key.removeprefix("param:"))
    if column.key == mk.TRAIN_SECONDS and mk.TRAIN_SECONDS not in run.metrics:
        return run.train_seconds
    point = run.metrics.get(column.key)
    if point is None:
        return None
    value = point[1]
    return int(value) if column.key == mk.MODEL_PARAMS and math.isfinite(value) else value


def _row(run: TableRun, columns: list[Column]) -> Row:
    values = {c.name: _value(run, c) for c in columns}
    validation_inputs = run.metrics[_VALIDATION][0] if _VALIDATION in run.metrics else None
    return Row(run=run, values=values, validation_inputs=validation_inputs)


def _with_cells(row: Row, columns: list[Column], common: int | None) -> Row:
    cells = {c.name: format_cell(c, row.values[c.name]) for c in columns}
    if row.validation_inputs is not None and row.validation_inputs != common:
        loss = next(c.name for c in columns if c.key == _VALIDATION)
        cells[loss] = f"({row.validation_inputs:,} steps) {cells[loss]}"
    return Row(row.run, row.values, row.validation_inputs, cells, row.best)


def mark_best(rows: list[Row], columns: list[Column]) -> list[Row]:
    """Each row with the columns where it holds the best value (lowest loss, highest accuracy)."""
    best: dict[int, list[str]] = {id(row): [] for row in rows}
    for column in columns:
        if column.best is None:
            continue
        numbers = [r.values[column.name] for r in rows if is_number(r.values[column.name])]
        numbers = [v for v in numbers if math.isfinite(v)]
        if not numbers:
            continue
        target = min(numbers) if column.best == "min" else max(numbers)
        for row in rows:
            if row.values[column.name] == target:
                best[id(row)].append(column.name)
    return [replace(r, best=tuple(best[id(r)])) for r in rows]


def sortable_columns(columns: list[Column]) -> list[str]:
    """Every name `sort` accepts: headers, metric keys and `validation loss`."""
    names = [c.name for c in columns]
    names += [c.key for c in columns if c.kind == "metric"]
    names.append("validation loss")
    return list(dict.fromkeys(names))


def _resolve(columns: list[Column], name: str) -> Column:
    for column in columns:
        if name in (column.name, column.key) or (
            column.key == _VALIDATION and name == "validation loss"
        ):
            return column
    known = ", ".join(repr(n) for n in sortable_columns(columns))
    raise UnknownColumn(f"cannot sort by {name!r}: it is not a column; choose one of {known}")


def _sorted(rows: list[Row], columns: list[Column], sort: str) -> list[Row]:
    descending = sort.startswith("-")
    column = _resolve(columns, sort.removeprefix("-").strip())
    return sort_rows(rows, column.name, descending)


def sort_rows(rows: list[Row], name: str, descending: bool) -> list[Row]:
    """`rows` by column `name` (stable); rows without a value last, whichever the direction."""
    present = [r for r in rows if r.values.get(name) is not None]
    missing = [r for r in rows if r.values.get(name) is None]
    present.sort(key=lambda r: _sort_key(r.values[name]), reverse=descending)
    return present + missing


def _sort_key(value: Any) -> tuple[int, Any]:
    if is_number(value):
        return (0, value)
    return (1, str(value))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_cell(column: Column, value: Any) -> str:
    """The text of one cell, as the seed's table writes it (no bold)."""
    if value is None:
        return ""
    if column.key == _VALIDATION or (column.key.endswith("_loss") and is_number(value)):
        return f"{value:.5f}"
    if column.key.startswith("accuracy"):
        return f"{value:.4f}"
    if column.key == mk.MODEL_PARAMS:
        return f"{value:,}"
    if column.key == mk.TRAIN_SECONDS:
        return format_duration(value)
    if column.key == mk.THROUGHPUT:
        return f"{value:,.0f}/s"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if column.kind == "metric" and isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_duration(seconds: float) -> str:
    """12.3s, 4m 05s, 1h 02m 03s."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _right_aligned(table: Table, column: Column) -> bool:
    if column.kind == "metric" or column.key in ("run", "sweep"):
        return True
    values = [r.values[column.name] for r in table.rows if r.values[column.name] is not None]
    return bool(values) and all(is_number(v) for v in values)


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: numbers right-aligned, best values in bold."""
    header = "| " + " | ".join(_md_escape(c.name) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if _right_aligned(table, c) else ":---" for c in table.columns)
    lines = [header, rule + "|"]
    for row in table.rows:
        cells = []
        for column in table.columns:
            text = _md_escape(row.cells[column.name])
            cells.append(f"**{text}**" if column.name in row.best and text else text)
        lines.append("| " + " | ".join(cells) + " |")
    if table.total is not None and (table.offset or len(table.rows) < table.total):
        shown = f"{table.offset + 1:,}-{table.offset + len(table.rows):,}" if table.rows else "none"
        lines.append(f"\n(rows {shown} of {table.total:,}; limit and offset page the rest)")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Raw values for spreadsheets and pandas: no separators, no bold; plus validation inputs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in table.columns] + ["validation inputs"])
    for row in table.rows:
        values = [csv_value(row.values[c.name]) for c in table.columns]
        writer.writerow([*values, csv_value(row.validation_inputs)])
    return buffer.getvalue()


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple | dict):
        return str(value)
    return value


def to_json(table: Table) -> dict[str, Any]:
    """Columns with their alignment and best direction; rows with raw values and cell text."""
    return {
        "columns": [
            {
                "name": c.name,
                "key": c.key,
                "kind": c.kind,
                "best": c.best,
                "align": "right" if _right_aligned(table, c) else "left",
            }
            for c in table.columns
        ],
        "rows": [
            {
                "run_id": r.run.run_id,
                "sweep_id": r.run.sweep_id,
                "matrix_id": r.run.matrix_id,
                "slug": r.run.slug,
                "status": r.run.status,
                "reused_from_id": r.run.reused_from_id,
                "validation_inputs": r.validation_inputs,
                "values": {name: json_value(v) for name, v in r.values.items()},
                "cells": r.cells,
                "best": list(r.best),
            }
            for r in table.rows
        ],
        "sort": table.sort,
        "total": len(table.rows) if table.total is None else table.total,
        "offset": table.offset,
    }


def json_value(value: Any) -> Any:
    # NaN/inf are not JSON; a diverged run's loss is shown as null plus its cell text.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
