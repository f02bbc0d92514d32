"""Client commands: talk to the API over HTTP (except `preview` and `inspect`, which are local)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import ApiClient, CliError
from cli.common import (
    FileArg,
    JsonOpt,
    SweepArg,
    TableFormat,
    console,
    parse_options_here,
    read_sweep,
)
from cli.render import (
    emit,
    print_inspect,
    print_json,
    print_preview,
    print_sweep,
    print_sweep_list,
    series_lines,
)
from cli.table_opts import (
    AverageOpt,
    AverageStdOpt,
    ExcludeOpt,
    IncludeOpt,
    SortOpt,
    table_query,
)
from cli.watch import watch_sweep


def submit(
    file: FileArg,
    force: Annotated[bool, typer.Option(help="train again even if a result exists")] = False,
    name: Annotated[str | None, typer.Option(help="sweep name (default: the file name)")] = None,
) -> None:
    """Submit FILE to the API; prints the sweep id."""
    sweep_file = read_sweep(file)
    with ApiClient.from_settings() as client:
        submit_file(client, file, sweep_file.text, force=force, name=name, bases=sweep_file.bases)


def submit_file(
    client: ApiClient,
    file: Path,
    yaml_text: str,
    *,
    force: bool,
    name: str | None = None,
    bases: dict[str, str] | None = None,
) -> int:
    body: dict[str, Any] = {"yaml": yaml_text, "name": name or file.stem}
    if bases:  # the server merges them as `$extends` says
        body.update(filename=file.name, files=bases)
    created = client.post("/sweeps", json=body, params={"force": "true"} if force else None)
    sweep_id = int(created["id"])
    runs = created.get("runs", [])
    reused = sum(1 for r in runs if r.get("status") == "reused")
    console.print(
        f"sweep {sweep_id}: {len(runs)} run(s) submitted"
        + (f", {reused} reused from earlier results" if reused else ""),
        highlight=False,
    )
    return sweep_id


def preview(
    file: FileArg,
    json_out: JsonOpt = False,
    every: Annotated[
        bool, typer.Option("--all", help="list every run (above 50, only the first are)")
    ] = False,
) -> None:
    """Expand FILE locally (no server): matrix_id, slug, params, experiment_name, config_hash."""
    from shared.domain.search import preview_specs
    from shared.settings import get_settings

    settings = get_settings()
    options = parse_options_here(settings)
    sweep = read_sweep(file).parse(max_runs=settings.max_runs, **options)
    runs = [
        {
            "matrix_id": r.matrix_id,
            "slug": r.slug,
            "params": r.params,
            "experiment_name": r.experiment_name,
            "config_hash": r.config_hash,
        }
        for r in preview_specs(sweep, **options)
    ]
    search = sweep.search.describe() if sweep.search else None
    if json_out:
        print_json(console, {"search": search, "runs": runs} if search else runs)
    else:
        print_preview(console, runs, search=search, every=every)


def inspect(
    file: FileArg,
    json_out: JsonOpt = False,
    summary: Annotated[bool, typer.Option(help="also print each model's structure")] = False,
) -> None:
    """Build each run's model locally and count its parameters (runs the file's model code)."""
    from shared.settings import get_settings
    from shared.sweepfile import SpecError
    from worker.engine.inspect import inspect_sweep

    settings = get_settings()
    sweep = read_sweep(file).parse(**parse_options_here(settings))
    try:
        rows = inspect_sweep(sweep.yaml_text, settings)  # with $extends: merged
    except SpecError as exc:
        raise CliError(f"{file}: {exc}") from None
    if json_out:
        print_json(console, rows)
        return
    print_inspect(console, rows)
    if summary:
        for row in rows:
            emit(f"\n# {row.get('matrix_id')} {row.get('slug', '')}\n{row.get('summary')}")


def status(
    sweep: Annotated[int | None, typer.Argument(help="sweep id (omit to list sweeps)")] = None,
    json_out: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="sweeps to list, or runs of a sweep per page")] = 20,
    offset: Annotated[int, typer.Option(help="runs of the sweep to skip")] = 0,
    status_: Annotated[
        str | None, typer.Option("--status", help="only runs of these statuses: failed,held")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="every run of the sweep")] = False,
) -> None:
    """List recent sweeps, or show one sweep's counts and runs (a page at a time)."""
    with ApiClient.from_settings() as client:
        if sweep is None:
            data = client.get("/sweeps", limit=limit)
            items = data.get("items", data) if isinstance(data, dict) else data
            print_json(console, data) if json_out else print_sweep_list(console, items)
            return
        data = client.sweep(sweep, limit=limit, offset=offset, status=status_, every=every)
        print_json(console, data) if json_out else print_sweep(console, data)


def watch(
    sweep: SweepArg,
    interval: Annotated[float, typer.Option(help="seconds between updates")] = 1.0,
) -> None:
    """Live progress of every run of SWEEP; prints the comparison table when all have ended."""
    with ApiClient.from_settings() as client:
        try:
            failed = watch_sweep(client, sweep, interval=interval)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    if failed:
        raise typer.Exit(1)


def table(
    sweep: SweepArg,
    format: Annotated[TableFormat, typer.Option("--format", "-f", help="md, csv or json")] = (
        TableFormat.md
    ),
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    sort: SortOpt = None,
    average: AverageOpt = None,
    average_std: AverageStdOpt = None,
) -> None:
    """The comparison table of SWEEP (like the seed's), with nn-experiments' table options."""
    options = table_query(include, exclude, sort, average, average_std)
    with ApiClient.from_settings() as client:
        _print_table(client, f"/sweeps/{sweep}/table", format, **options)


def _print_table(client: ApiClient, path: str, format: TableFormat, **params: Any) -> None:
    params["format"] = format.value
    if format is TableFormat.json:
        params["limit"] = 100_000  # JSON pages by default; the command prints every row
        print_json(console, client.get(path, **params))
    else:
        emit(client.get_text(path, **params))


def compare(
    runs: Annotated[str | None, typer.Option(help="comma-separated run ids")] = None,
    sweeps: Annotated[str | None, typer.Option(help="comma-separated sweep ids")] = None,
    format: Annotated[TableFormat, typer.Option("--format", "-f", help="md, csv or json")] = (
        TableFormat.md
    ),
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    sort: SortOpt = None,
    average: AverageOpt = None,
    average_std: AverageStdOpt = None,
) -> None:
    """One comparison table across runs and sweeps, with the table options of `table`."""
    if not runs and not sweeps:
        raise CliError("give --runs and/or --sweeps (comma-separated ids)")
    options = table_query(include, exclude, sort, average, average_std)
    with ApiClient.from_settings() as client:
        _print_table(client, "/compare", format, runs=runs, sweeps=sweeps, **options)


def metrics(
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="run id", show_default=False)],
    key: Annotated[list[str] | None, typer.Option("--key", "-k", help="metric key(s)")] = None,
    max_points: Annotated[int | None, typer.Option(help="downsample to this many")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A run's metric series as (inputs, value) pairs."""
    with ApiClient.from_settings() as client:
        data = client.get(
            f"/runs/{run_id}/metrics", keys=",".join(key) if key else None, max_points=max_points
        )
    if json_out:
        print_json(console, data)
        return
    for line in series_lines(data):
        emit(line)


def cancel(
    sweep: Annotated[int | None, typer.Argument(help="sweep id")] = None,
    run_id: Annotated[int | None, typer.Option("--run", help="cancel only this run")] = None,
) -> None:
    """Cancel a sweep's unfinished runs, or one run with --run."""
    if (sweep is None) == (run_id is None):
        raise CliError("give a sweep id or --run RUN (one of them)")
    path = f"/runs/{run_id}/cancel" if run_id is not None else f"/sweeps/{sweep}/cancel"
    with ApiClient.from_settings() as client:
        result = client.post(path)
    what = f"run {run_id}" if run_id is not None else f"sweep {sweep}"
    console.print(f"cancel requested for {what}{_summary(result)}", highlight=False)


def retry(
    sweep: SweepArg,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="the fixed file (same matrix): its configuration replaces that of the runs "
            "that have not trained",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="release a held sweep's runs unchanged")] = False,
) -> None:
    """Queue a sweep's held, failed, cancelled and pruned runs again (pruned ones to the end).

    A held sweep (its first runs all failed alike) needs --file FIXED.yaml or --force.
    """
    body: dict[str, Any] = {}
    if file is not None:
        sweep_file = read_sweep(file)
        body = {"json": {"yaml": sweep_file.text, "filename": file.name, "files": sweep_file.bases}}
    with ApiClient.from_settings() as client:
        result = client.post(
            f"/sweeps/{sweep}/retry", params={"force": "true"} if force else None, **body
        )
    console.print(f"retry requested for sweep {sweep}{_summary(result)}", highlight=False)


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    if "retried" in result:
        refitted = result.get("refitted") or 0
        return f": {len(result['retried'])} run(s) queued again" + (
            f", {refitted} with the new file's configuration" if refitted else ""
        )
    if "cancel_requested" in result and "cancelled" in result:
        return (
            f": {len(result['cancelled'])} queued run(s) cancelled, "
            f"{len(result['cancel_requested'])} running run(s) asked to stop"
        )
    if "status" in result:
        return f" (status {result['status']})"
    return ""
