"""A table averaged over one matrix key, as nn-experiments' `results --average-column` does.

Put `trial: [1, 2, 3, 4, 5]` in the matrix and average over `trial`: one row per configuration
(the matrix values without the key), with the mean of each metric over the runs that finished
(succeeded, or reused a finished result). Runs still going, failed, cancelled or pruned are
left out, and the row's `left out` cell names them. `num trials` counts the runs averaged.

The std is the sample standard deviation (ddof=1, what the original's pandas `std()` gives):
trials are a sample of the seeds one could have drawn. A row of one run has no std (null in
JSON, no `± ...` in its cell). NaN values are skipped like pandas does (a diverged run
counts in `num trials` but not in that column's mean; `n` in JSON says how many were).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from shared.results_table import (
    Column,
    Row,
    Table,
    csv_value,
    format_cell,
    is_number,
    json_value,
    mark_best,
    to_json,
)

STD_DDOF = 1
AVERAGED_STATUSES = frozenset({"succeeded", "reused"})


class TableOptionError(ValueError):
    """An option that does not fit the table (unknown column, average key not in the matrix)."""


class NotNumeric(TableOptionError):
    """A std column whose values are not numbers (a parameter, the status)."""


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None
    n: int  # the values the mean is of


@dataclass(frozen=True)
class Group:
    """What an averaged row stands for."""

    run_ids: tuple[int, ...]  # averaged
    params: dict[str, Any]
    left_out: dict[str, tuple[int, ...]]  # status -> run ids not averaged
    stats: dict[str, Stat]  # metric column name -> statistics
    std_columns: tuple[str, ...]


def is_averaged(table: Table) -> bool:
    return table.average is not None


def stat(values: list[Any]) -> Stat:
    """Mean and sample std of the numbers among `values` (None and NaN skipped)."""
    numbers = [float(v) for v in values if is_number(v) and not math.isnan(v)]
    n = len(numbers)
    if n == 0:
        return Stat(None, None, 0)
    mean = math.fsum(numbers) / n
    if n <= STD_DDOF or not math.isfinite(mean):
        return Stat(mean, None, n)
    variance = math.fsum((x - mean) ** 2 for x in numbers) / (n - STD_DDOF)
    return Stat(mean, math.sqrt(variance), n)


def average_rows(table: Table, key: str, std_columns: list[Column]) -> Table:
    """One row per configuration of `table`'s rows, averaged over the matrix key `key`."""
    for column in std_columns:
        if column.kind != "metric":
            raise NotNumeric(
                f"cannot show the std of {column.name!r}: it is not a numeric metric column"
            )
    groups: dict[str, list[Row]] = {}
    for row in table.rows:
        params = {k: v for k, v in row.run.params.items() if k != key}
        groups.setdefault(json.dumps(params, sort_keys=True, default=str), []).append(row)
    std_names = tuple(c.name for c in std_columns)
    left_out = any(row.run.status not in AVERAGED_STATUSES for row in table.rows)
    columns = _columns(table.columns, key, left_out=left_out)
    rows = [_row(members, columns, key, std_names) for members in groups.values()]
    return Table(columns, mark_best(rows, columns), table.sort, average=key)


def _columns(columns: list[Column], key: str, *, left_out: bool) -> list[Column]:
    dropped = {"run", "sweep", "status", f"param:{key}"}
    params = [c for c in columns if c.kind == "param" and c.key not in dropped]
    metrics = [c for c in columns if c.kind == "metric"]
    out = [Column("runs", "runs", "info"), *params, Column(f"num {key}s", "count", "info")]
    out += metrics
    if left_out:
        out.append(Column("left out", "left_out", "info"))
    return out


def _row(members: list[Row], columns: list[Column], key: str, std_names: tuple[str, ...]) -> Row:
    kept = [r for r in members if r.run.status in AVERAGED_STATUSES]
    left: dict[str, list[int]] = {}
    for r in members:
        if r.run.status not in AVERAGED_STATUSES:
            left.setdefault(r.run.status, []).append(r.run.run_id)
    first = members[0]
    group = Group(
        run_ids=tuple(r.run.run_id for r in kept),
        params={k: v for k, v in first.run.params.items() if k != key},
        left_out={status: tuple(ids) for status, ids in left.items()},
        stats={
            c.name: stat([r.values.get(c.name) for r in kept])
            for c in columns
            if c.kind == "metric"
        },
        std_columns=std_names,
    )
    values: dict[str, Any] = {}
    cells: dict[str, str] = {}
    for column in columns:
        values[column.name], cells[column.name] = _cell(column, first, group)
    inputs = Counter(r.validation_inputs for r in kept)
    validation_inputs = next(iter(inputs)) if len(inputs) == 1 else None
    return Row(first.run, values, validation_inputs, cells, group=group)


def _cell(column: Column, first: Row, group: Group) -> tuple[Any, str]:
    if column.key == "runs":
        return list(group.run_ids), ",".join(map(str, group.run_ids))
    if column.key == "count":
        return len(group.run_ids), str(len(group.run_ids))
    if column.key == "left_out":
        return {s: list(ids) for s, ids in group.left_out.items()}, left_out_text(group.left_out)
    if column.kind == "param":
        return first.values.get(column.name), first.cells.get(column.name, "")
    s = group.stats[column.name]
    mean = s.mean
    if mean is not None and column.key == "model_params" and mean.is_integer():
        mean = int(mean)
    text = format_cell(column, mean)
    if column.name in group.std_columns and s.std is not None:
        text += f" ± {format_cell(column, s.std)}"
    return mean, text


def left_out_text(left_out: dict[str, tuple[int, ...]]) -> str:
    """'1 failed (run 4), 2 running (runs 7,9)'."""
    parts = []
    for status, ids in left_out.items():
        runs = "run" if len(ids) == 1 else "runs"
        parts.append(f"{len(ids)} {status} ({runs} {','.join(map(str, ids))})")
    return ", ".join(parts)


def averaged_csv(table: Table) -> str:
    """Raw numbers: each mean, and a `<column> std` column after each std column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header: list[str] = []
    for column in table.columns:
        header.append(column.name)
        if _has_std(table, column):
            header.append(f"{column.name} std")
    writer.writerow([*header, "validation inputs"])
    for row in table.rows:
        cells: list[Any] = []
        for column in table.columns:
            value = row.values[column.name]
            if column.key == "runs":
                value = " ".join(map(str, value))
            elif column.key == "left_out":
                value = row.cells[column.name]
            cells.append(csv_value(value))
            if _has_std(table, column):
                cells.append(csv_value(row.group.stats[column.name].std))
        writer.writerow([*cells, csv_value(row.validation_inputs)])
    return buffer.getvalue()


def _has_std(table: Table, column: Column) -> bool:
    return bool(table.rows) and column.name in table.rows[0].group.std_columns


def averaged_json(table: Table) -> dict[str, Any]:
    """to_json's columns; rows with their runs, left-out runs and mean, std, n per metric."""
    document = to_json(table)
    document["rows"] = [
        {
            "run_ids": list(row.group.run_ids),
            "params": row.group.params,
            "n": len(row.group.run_ids),
            "left_out": {s: list(ids) for s, ids in row.group.left_out.items()},
            "validation_inputs": row.validation_inputs,
            "values": {name: json_value(v) for name, v in row.values.items()},
            "stats": {
                name: {"mean": json_value(s.mean), "std": json_value(s.std), "n": s.n}
                for name, s in row.group.stats.items()
                if name in row.values
            },
            "cells": row.cells,
            "best": list(row.best),
        }
        for row in table.rows
    ]
    document["average"] = table.average
    document["std_columns"] = list(table.rows[0].group.std_columns) if table.rows else []
    return document
