"""`sweeps watch`: live progress of a sweep until nothing is left to run, then its table.

A sweep of up to WATCH_ALL_UP_TO runs gets a bar per run, as before. A bigger one gets its
status counts and a bar per run training now; at the end, the failures (the first few, with
the count of the rest) and the best TABLE_ROWS rows of its table, each saying what it left
out. A held sweep ends the watch at once, with the reason and how to go on.
"""

from __future__ import annotations

from typing import Any

from cli.client import ApiClient
from cli.common import console, err_console
from cli.render import SweepView, emit, hold_text, poll_until_finished

WATCH_ALL_UP_TO = 200  # bars for every run up to this many; above, for the running ones
FAILURES_SHOWN = 10
TABLE_ROWS = 50  # rows of a big sweep's final table (the lowest validation loss first)


def watch_sweep(client: ApiClient, sweep_id: int, *, interval: float, check: Any = None) -> int:
    """Progress until no run is queued or running, then the table; returns the number of runs
    failed or held."""
    latest: dict[int, dict[str, Any]] = {}
    final: set[int] = set()  # finished runs whose last values have been fetched
    seen: dict[str, Any] = {}

    def fetch() -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], bool]:
        if check is not None:
            check()
        sweep = client.get(f"/sweeps/{sweep_id}", limit=WATCH_ALL_UP_TO)
        runs = sweep.get("runs", [])
        big = sweep.get("runs_total", len(runs)) > len(runs)
        if big:
            path = f"/sweeps/{sweep_id}"
            runs = client.get(path, status="running", limit=WATCH_ALL_UP_TO).get("runs", [])
            _print_counts(sweep, seen)
        for run_ in runs:
            run_id, status_ = int(run_["id"]), str(run_.get("status"))
            # Latest values only for runs that are training, plus once after each one ends.
            if status_ in ("queued", "held") or run_id in final:
                continue
            detail = client.get(f"/runs/{run_id}")
            latest[run_id] = {k: p.get("value") for k, p in (detail.get("latest") or {}).items()}
            if status_ != "running":
                final.add(run_id)
        seen["sweep"] = sweep
        return runs, latest, sweep.get("status") != "active"

    with SweepView(console) as view:
        poll_until_finished(fetch, view, interval=interval)
    sweep = seen["sweep"]
    counts = sweep.get("counts") or {}
    _print_failures(client, sweep_id, counts.get("failed", 0))
    if sweep.get("hold_reason"):
        err_console.print(hold_text(sweep), highlight=False)
    if sweep.get("run_count", 0) > WATCH_ALL_UP_TO:
        table = client.get_text(
            f"/sweeps/{sweep_id}/table", format="md", sort="validation_loss", limit=TABLE_ROWS
        )
        emit(f"the {TABLE_ROWS} runs with the lowest validation loss:\n{table}")
    else:
        emit(client.get_text(f"/sweeps/{sweep_id}/table", format="md"))
    return int(counts.get("failed", 0)) + int(counts.get("held", 0))


def _print_counts(sweep: dict[str, Any], seen: dict[str, Any]) -> None:
    """The status counts of a big sweep, when they change."""
    counts = sweep.get("counts") or {}
    text = ", ".join(f"{n:,} {status}" for status, n in counts.items() if n)
    if text != seen.get("counts"):
        seen["counts"] = text
        console.print(f"sweep {sweep['id']}: {sweep.get('status')} ({text})", highlight=False)


def _print_failures(client: ApiClient, sweep_id: int, failed: int) -> None:
    if not failed:
        return
    runs = client.get(f"/sweeps/{sweep_id}", status="failed", limit=FAILURES_SHOWN).get("runs", [])
    for run_ in runs:
        error = str(run_.get("error") or "no error recorded").strip().splitlines()
        err_console.print(
            f"run {run_['id']} failed: {error[-1] if error else ''} "
            f"(details: sweeps status {sweep_id} --status failed --json)",
            highlight=False,
        )
    if failed > len(runs):
        err_console.print(
            f"... and {failed - len(runs):,} more failed runs "
            f"(sweeps status {sweep_id} --status failed)",
            highlight=False,
        )
