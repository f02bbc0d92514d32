"""Terminal output: tables for preview/inspect/status and the live per-run progress of `watch`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from shared import metric_keys as mk

PREVIEW_ROWS = 50  # `sweeps preview` lists this many runs unless --all
# Latest-value keys shown beside each progress bar, with their short labels.
WATCHED_METRICS = (
    (mk.VALIDATION_LOSS, "val loss", "{:.5f}"),
    (mk.ACCURACY_ARGMAX, "acc", "{:.4f}"),
    (mk.ACCURACY_SVC, "svc", "{:.4f}"),
)


def emit(text: str) -> None:
    """Data for other programs (tables, CSV, JSON, series): exactly as given, tabs kept."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def print_json(console: Console, data: Any) -> None:
    # Plain text, not console.print_json: no highlighting, so output pipes cleanly into jq.
    emit(json.dumps(data, indent=2, default=str))


# How the API names a null value (JSON has no NaN or infinity) -> how Python prints it.
_NON_FINITE_TEXT = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}


def series_lines(data: dict[str, Any]) -> list[str]:
    """GET /runs/{id}/metrics as text: `# key`, then `step<TAB>value` lines; NaN as `nan`."""
    lines = []
    named = data.get("non_finite") or {}
    for key, points in (data.get("series") or {}).items():
        lines.append(f"# {key}")
        odd = {step: _NON_FINITE_TEXT.get(name, "nan") for step, name in named.get(key, [])}
        for step, value in points:
            text = odd.get(step, "nan") if value is None else str(value)
            lines.append(f"{step}\t{text}")
    return lines


def _name_is_redundant(rows: list[dict[str, Any]]) -> bool:
    """experiment_name usually just repeats the slug; then the column only costs width."""
    return all(r.get("slug") and r["slug"] in str(r.get("experiment_name", "")) for r in rows)


def print_preview(
    console: Console,
    runs: list[dict[str, Any]],
    *,
    search: str | None = None,
    every: bool = False,
) -> None:
    """A table of the runs; above PREVIEW_ROWS, the first ones and a line saying how many more
    (`every`: all of them, as plain tab-separated lines, which print fast)."""
    if every and len(runs) > PREVIEW_ROWS:
        lines = ["matrix_id\tslug\texperiment_name\tconfig_hash"]
        lines += [
            f"{r['matrix_id']}\t{r['slug'] or '-'}\t{r['experiment_name']}\t{r['config_hash'][:12]}"
            for r in runs
        ]
        emit("\n".join(lines))
        return
    title = f"{len(runs):,} run(s)"
    if search is not None:
        console.print(f"search: {search}", highlight=False, soft_wrap=True)
        title = f"its first {len(runs)} sampled trial(s)" if runs and runs[0]["params"] else title
    table = Table(title=title, title_justify="left")
    show_name = not _name_is_redundant(runs)
    names = ["matrix_id", "slug"] + (["experiment_name"] if show_name else []) + ["config_hash"]
    for name in names:
        table.add_column(name, overflow="fold")
    for run in runs[:PREVIEW_ROWS]:
        cells = [run["matrix_id"], run["slug"] or "-"]
        cells += [run["experiment_name"]] if show_name else []
        table.add_row(*cells, run["config_hash"][:12])
    console.print(table)
    if len(runs) > PREVIEW_ROWS:
        console.print(
            f"... and {len(runs) - PREVIEW_ROWS:,} more runs: --all lists every one, "
            "--json prints them as JSON",
            highlight=False,
        )


def finished_statuses() -> frozenset[str]:
    """The statuses a run ends in. Their module, the database layer, is imported only here:
    at the CLI's start it would double the time every command takes to begin."""
    from shared.db.models import FINISHED_STATUSES

    return frozenset(status.value for status in FINISHED_STATUSES)


def print_inspect(console: Console, rows: list[dict[str, Any]]) -> None:
    """One row per run: its id, slug and every scalar field the engine reported."""
    table = Table(title=f"{len(rows)} model(s)", title_justify="left")
    columns: list[str] = []
    skip = {"experiment_name"} if _name_is_redundant(rows) else set()
    for row in rows:
        for key, value in row.items():
            if key in skip:
                continue
            # Multi-line values (the model summary) do not fit a table; `--summary` shows them.
            multiline = isinstance(value, str) and "\n" in value
            if key not in columns and not multiline and not isinstance(value, (dict, list)):
                columns.append(key)
    for column in columns:
        numeric = any(isinstance(r.get(column), (int, float)) for r in rows)
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_sweep_list(console: Console, sweeps: Iterable[dict[str, Any]]) -> None:
    table = Table()
    for name in ("id", "name", "status", "runs", "created"):
        table.add_column(name)
    for sweep in sweeps:
        counts = sweep.get("counts") or {}
        total = sweep.get("run_count", sum(counts.values()) if counts else "")
        table.add_row(
            str(sweep["id"]),
            str(sweep.get("name", "")),
            str(sweep.get("status", "")),
            f"{_counts_text(counts)} of {total}" if counts else str(total),
            str(sweep.get("created_at", ""))[:19],
        )
    console.print(table)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def print_sweep(console: Console, sweep: dict[str, Any]) -> None:
    counts = sweep.get("counts") or {}
    console.print(
        f"sweep {sweep['id']} {sweep.get('name', '')}: {sweep.get('status', '')}"
        + (f" ({_counts_text(counts)})" if counts else ""),
        highlight=False,
    )
    if sweep.get("hold_reason"):
        console.print(hold_text(sweep), highlight=False)
    if search := sweep.get("search"):
        best = search.get("best_value")
        console.print(
            f"search: {search['description']}; {search['started']} of {search['trials']} "
            "trials started"
            + (f"; best {search['metric']} {best:.6g} (run {search['best_run_id']})"
               if best is not None else ""),
            highlight=False,
            soft_wrap=True,
        )  # fmt: skip
        if search.get("stopped"):
            console.print(f"search {search['stopped']}", highlight=False, soft_wrap=True)
    table = Table()
    for name in ("run", "matrix_id", "slug", "status", "inputs", "error"):
        table.add_column(name, overflow="fold")
    for run in sweep.get("runs", []):
        table.add_row(
            str(run["id"]),
            str(run.get("matrix_id", "")),
            str(run.get("slug") or "-"),
            str(run.get("status", "")),
            _inputs_text(run),
            str(run.get("error") or ""),
        )
    console.print(table)
    shown, total = len(sweep.get("runs", [])), sweep.get("runs_total")
    if total is not None and shown < total:
        first = int(sweep.get("runs_offset") or 0) + 1
        console.print(
            f"runs {first:,}-{first + shown - 1:,} of {total:,} shown; --all shows every run, "
            "--offset/--limit a page, --status only some",
            highlight=False,
        )


def hold_text(sweep: dict[str, Any]) -> str:
    """Why a sweep is held and how to go on."""
    sweep_id = sweep["id"]
    return (
        f"sweep {sweep_id} is held: {sweep['hold_reason']}\n"
        f"fix the file, then `sweeps retry {sweep_id} --file FILE`; or release the runs "
        f"unchanged with `sweeps retry {sweep_id} --force`"
    )


def _inputs_text(run: dict[str, Any]) -> str:
    seen = run.get("inputs_seen") or 0
    total = run.get("max_inputs")
    return f"{seen:,} / {total:,}" if total else f"{seen:,}"


def metrics_text(latest: dict[str, Any]) -> str:
    parts = []
    for key, label, fmt in WATCHED_METRICS:
        value = latest.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {fmt.format(value)}")
    return "  ".join(parts)


class RateColumn(ProgressColumn):
    """Training inputs per second, from rich's moving estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed or task.finished:
            return Text("")
        return Text(f"{speed:,.0f} inputs/s", style="progress.data.speed")


class InputsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = f"{int(task.total):,}" if task.total else "?"
        return Text(f"{int(task.completed):,}/{total}", style="progress.download")


class SweepView:
    """Live progress: one bar per run (inputs seen of max_inputs, rate, ETA, latest metrics).

    On a terminal the bars redraw in place; otherwise one line per change of status and a
    progress line at most every `plain_every` seconds, so logs stay readable.
    """

    def __init__(self, console: Console, *, plain_every: float = 10.0) -> None:
        self.console = console
        self.live = console.is_interactive
        self.plain_every = plain_every
        self.finished = finished_statuses()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            InputsColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[metrics]}"),
            console=console,
            auto_refresh=self.live,
            disable=not self.live,
        )
        self.tasks: dict[int, TaskID] = {}
        self.last_line: dict[int, tuple[str, int, float]] = {}  # status, inputs, printed at
        self.first_seen: dict[int, tuple[int, float]] = {}  # inputs and time when first running

    def __enter__(self) -> SweepView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def update(self, runs: list[dict[str, Any]], latest: dict[int, dict[str, Any]]) -> None:
        """Bars for `runs`; a bar whose run is no longer listed (a big sweep lists only the
        runs training now) is removed."""
        listed = {int(run["id"]) for run in runs}
        for run_id in set(self.tasks) - listed:
            self.progress.remove_task(self.tasks.pop(run_id))
        for run in runs:
            run_id = int(run["id"])
            status = str(run.get("status", ""))
            seen = int(run.get("inputs_seen") or 0)
            total = run.get("max_inputs")
            metrics = metrics_text(latest.get(run_id, {}))
            if self.live:
                self._update_bar(run, run_id, status, seen, total, metrics)
            else:
                self._plain_line(run, run_id, status, seen, total, metrics)

    def _update_bar(
        self, run: dict[str, Any], run_id: int, status: str, seen: int, total: Any, metrics: str
    ) -> None:
        if run_id not in self.tasks:
            label = (
                f"{run.get('matrix_id', '')} {run.get('slug') or run.get('experiment_name', '')}"
            )
            self.tasks[run_id] = self.progress.add_task(
                label.strip()[:40], total=total, status=status, metrics=metrics
            )
        task_id = self.tasks[run_id]
        if status in self.finished and total and status in {"succeeded", "reused"}:
            seen = max(seen, int(total))
        self.progress.update(task_id, completed=seen, total=total, status=status, metrics=metrics)
        if status in self.finished:
            self.progress.stop_task(task_id)

    def _plain_line(
        self, run: dict[str, Any], run_id: int, status: str, seen: int, total: Any, metrics: str
    ) -> None:
        """A line when the status changes, or when inputs moved and `plain_every` has passed."""
        now = time.monotonic()
        previous = self.last_line.get(run_id)
        if previous is not None:
            old_status, old_seen, printed_at = previous
            if status == old_status and (
                seen == old_seen or status in self.finished or now - printed_at < self.plain_every
            ):
                return
        self.last_line[run_id] = (status, seen, now)
        inputs = f"{seen:,}/{int(total):,} inputs" if total else f"{seen:,} inputs"
        label = run.get("slug") or run.get("experiment_name", "")
        self.console.out(
            f"run {run_id} {run.get('matrix_id', '')} {label}: {status} {inputs}"
            + self._rate_text(run_id, status, seen, total, now)
            + (f"  {metrics}" if metrics else ""),
            highlight=False,
        )

    def _rate_text(self, run_id: int, status: str, seen: int, total: Any, now: float) -> str:
        """Inputs per second since this view first saw the run training, and the time left."""
        if status != "running":
            return ""
        first = self.first_seen.setdefault(run_id, (seen, now))
        elapsed, done = now - first[1], seen - first[0]
        if elapsed <= 0 or done <= 0:
            return ""
        rate = done / elapsed
        text = f"  {rate:,.0f} inputs/s"
        if total and total > seen:
            text += f"  ETA {_duration((int(total) - seen) / rate)}"
        return text


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def poll_until_finished(
    fetch: Callable[[], tuple[list[dict[str, Any]], dict[int, dict[str, Any]], bool]],
    view: SweepView,
    *,
    interval: float,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Call fetch() every `interval` seconds, feeding the view, until it says it is done."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        runs, latest, done = fetch()
        view.update(runs, latest)
        if done:
            return runs
        if deadline is not None and time.monotonic() > deadline:
            return runs
        time.sleep(interval)
