"""What the templates show, shaped from the domain layer's results and the shared table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from shared.db.models import Run
from shared.domain.reads import SweepSummary
from shared.domain.submit import PlannedRun
from shared.metric_keys import ACCURACY_KEYS
from shared.results_table import METRIC_HEADERS, Table, TableRun
from shared.sweepfile.search import Search

# A big sweep's page: what a person can read, drawn quickly (BENCHMARKS.md, "Scale").
BEST_BY = "validation_loss"  # the "best runs" table and the curves drawn are ranked by it
CURVE_RUNS = 20  # curves of all runs up to this many; above, of the best this many
LIVE_CURVE_RUNS = 10  # ... plus this many of the runs training now
PARCOORDS_RUNS = 1000  # lines in the parallel-coordinates plot, the most accurate runs


@dataclass(frozen=True)
class Cell:
    text: str
    value: Any = None
    numeric: bool = False
    best: bool = False


@dataclass(frozen=True)
class TableRow:
    run_id: int
    cells: list[Cell] = field(default_factory=list)


@dataclass(frozen=True)
class TableView:
    columns: list[str]
    rows: list[TableRow]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table_view(table: Table) -> TableView:
    """Header names and cells; numeric cells carry their raw value for client-side sorting."""
    rows = []
    for row in table.rows:
        cells = []
        for column in table.columns:
            value = row.values[column.name]
            numeric = _is_number(value) and math.isfinite(value)
            cells.append(
                Cell(
                    text=row.cells[column.name],
                    value=value if numeric else None,
                    numeric=numeric,
                    best=column.name in row.best,
                )
            )
        # An averaged row stands for several runs: no link to one of them.
        rows.append(TableRow(run_id=row.run.run_id if row.group is None else 0, cells=cells))
    return TableView(columns=[c.name for c in table.columns], rows=rows)


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def progress_fraction(summary: SweepSummary) -> float:
    """Inputs-weighted progress when runs know max_inputs, else the share of finished runs."""
    if summary.progress is not None:
        return max(0.0, min(1.0, summary.progress))
    if not summary.run_count:
        return 0.0
    active = summary.counts.get("queued", 0) + summary.counts.get("running", 0)
    return (summary.run_count - active) / summary.run_count


def sweep_row(summary: SweepSummary) -> dict[str, Any]:
    sweep = summary.sweep
    order = ("running", "queued", "held", "succeeded", "reused", "pruned", "failed", "cancelled")
    return {
        "id": sweep.id,
        "name": sweep.name,
        "status": sweep.status.value,
        "created": when(sweep.created_at),
        "created_ts": int(sweep.created_at.timestamp()),
        "runs": summary.run_count,
        "counts": {s: summary.counts[s] for s in order if summary.counts.get(s)},
        "progress": progress_fraction(summary),
    }


def parcoords_spec(runs: list[TableRun], param_keys: list[str]) -> dict[str, Any]:
    """Matrix parameters and final accuracy per run (the PARCOORDS_RUNS most accurate), for
    the parallel-coordinates plot."""
    # Runs are coloured by the first accuracy that any run has.
    key = next((k for k in ACCURACY_KEYS if any(k in r.metrics for r in runs)), None)
    label = METRIC_HEADERS[key] if key else "accuracy"

    def accuracy(metrics: dict[str, tuple[int, float]]) -> float | None:
        point = metrics.get(key) if key else None
        return point[1] if point and math.isfinite(point[1]) else None

    # Runs without a final accuracy yet (queued, running, failed) have no line to draw.
    lines = [(r, value) for r in runs if (value := accuracy(r.metrics)) is not None]
    lines.sort(key=lambda line: -line[1])
    return {
        "params": list(param_keys),
        "accuracy_label": label,
        "runs": [
            {
                "id": r.run_id,
                "slug": r.slug,
                "params": {k: _plain(r.params.get(k)) for k in param_keys},
                "accuracy": value,
            }
            for r, value in lines[:PARCOORDS_RUNS]
        ],
        "left_out": max(0, len(lines) - PARCOORDS_RUNS),
    }


def pager(table: Table, page: int, size: int, query: str) -> dict[str, Any]:
    """Where this page of a table sits: rows shown, total, and links to the neighbouring pages
    (`query`: the table options' '?...' or '', kept in the links)."""
    total = table.total if table.total is not None else len(table.rows)
    pages = max(1, -(-total // size))
    join = "&" if query else "?"
    return {
        "first": table.offset + 1 if table.rows else 0,
        "last": table.offset + len(table.rows),
        "total": total,
        "page": page,
        "pages": pages,
        "prev": f"{query}{join}page={page - 1}" if page > 1 else None,
        "next": f"{query}{join}page={page + 1}" if page < pages else None,
    }


def curve_choice(
    sweep_id: int, runs: list[TableRun], ranked: Table, *, all_curves: bool
) -> dict[str, Any]:
    """Which runs' curves the page draws: all of a small sweep (or when asked); else the
    CURVE_RUNS best by validation loss (`ranked`: the table sorted by BEST_BY) plus up to
    LIVE_CURVE_RUNS runs training now."""
    if all_curves or len(runs) <= CURVE_RUNS:
        return {"url": f"/ui/api/curves?sweeps={sweep_id}", "run_ids": [], "all": True}
    best = [row.run.run_id for row in ranked.rows if row.run.metrics.get(BEST_BY)]
    running = [r.run_id for r in runs if r.status == "running"][:LIVE_CURVE_RUNS]
    ids = list(dict.fromkeys([*best, *running])) or [r.run_id for r in runs[:CURVE_RUNS]]
    return {
        "url": "/ui/api/curves?runs=" + ",".join(map(str, ids)),
        "run_ids": ids,
        "all": False,
        "best": len(best),
        "running": len(running),
        "total": len(runs),
    }


def _plain(value: Any) -> Any:
    """Numbers stay numbers (a numeric axis); anything else becomes a category label."""
    if _is_number(value):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (model code, datasets) as `|` blocks, as people write them."""


def _str_block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if "\n" in text:
        # PyYAML refuses block style when a line ends in spaces; they mean nothing in code.
        text = "\n".join(line.rstrip() for line in text.split("\n"))
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


_ReadableDumper.add_representer(str, _str_block)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True, width=100)


def params_text(run: Run) -> str:
    return ", ".join(f"{k}={_plain(v)}" for k, v in (run.params or {}).items()) or "(none)"


def run_timings(run: Run) -> list[tuple[str, str]]:
    rows = [
        ("created", when(run.created_at)),
        ("enqueued", when(run.enqueued_at)),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("heartbeat", when(run.heartbeat_at)),
    ]
    if run.train_seconds is not None:
        rows.append(("train time", f"{run.train_seconds:,.1f}s"))
    return [(label, value) for label, value in rows if value]


# Phases as the worker records them (worker/engine/phases.py), in the order a run meets them.
PHASE_LABELS = {
    "claim": "claim the run",
    "imports": "process start and imports",
    "data": "data",
    "build": "model build",
    "resume": "resume from checkpoint",
    "compile": "compile (first step, within training)",
    "train": "training",
    "validation": "validation",
    "embed_heldout": "held-out embeddings",
    "checkpoint": "checkpoint saves",
    "svc_wait": "waiting for the SVC probes",
    "svc_fit": "SVC fit, in-sample (background)",
    "svc_fit_heldout": "SVC fit, held-out (background)",
    "metric_writes": "metric writes (background)",
    "total": "total",
}


def run_phases(run: Run) -> list[tuple[str, str, str]]:
    """(phase, seconds, share of the run's total) rows for "where the time went"."""
    phases = {str(k): float(v) for k, v in (run.phases or {}).items()}
    total = phases.get("total")
    order = [name for name in PHASE_LABELS if name in phases]
    order += sorted(name for name in phases if name not in PHASE_LABELS)
    rows = []
    for name in order:
        seconds = phases[name]
        share = f"{seconds / total:.0%}" if total and name != "total" else ""
        rows.append((PHASE_LABELS.get(name, name), f"{seconds:,.2f}s", share))
    return rows


def preview(plans: list[PlannedRun], search: Search | None = None) -> dict[str, Any]:
    return {
        "search": search.describe() if search else None,
        "runs": [
            {
                "matrix_id": p.spec.matrix_id,
                "slug": p.spec.slug,
                "experiment_name": p.spec.experiment_name,
                "config_hash": p.spec.config_hash,
                "reuse": f"run #{p.reuse_from_id}"
                if p.reuse_from_id
                else (f"linked to run #{p.link_to_id} (training)" if p.link_to_id else ""),
            }
            for p in plans
        ],
    }
