"""`sweeps`: run the embedded stack, the API or a worker, and drive the API from a terminal."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli.client import ApiClient, CliError
from cli.render import (
    SweepView,
    emit,
    poll_until_finished,
    print_inspect,
    print_json,
    print_preview,
    print_sweep,
    print_sweep_list,
)

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class App(typer.Typer):
    """Typer app that prints a CliError as one line on stderr instead of a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except CliError as exc:
            message = exc.message if exc.message.startswith("error") else f"error: {exc.message}"
            print(message, file=sys.stderr)
            sys.exit(exc.exit_code)
        except Exception as exc:
            line = _database_failure(exc)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            sys.exit(1)


def _database_failure(exc: Exception) -> str | None:
    """One line for a database that cannot be reached (commands that use it directly)."""
    from sqlalchemy.exc import OperationalError

    if not isinstance(exc, OperationalError):
        return None
    from shared.settings import get_settings

    url = get_settings().database_url
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unknown reason"
    safe = url.split("@", 1)[-1] if "@" in url else url
    hint = (
        "run `sweeps migrate`"
        if "no such table" in reason or "does not exist" in reason
        else ("check SWEEPS_DATABASE_URL")
    )
    return f"cannot use the database {safe} ({reason}); {hint}"


app = App(
    name="sweeps",
    help="Run nn-experiments YAML sweeps: an embedded stack, the API, workers and a client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Create and revoke API tokens (talks to the database directly).")
app.add_typer(token_app, name="token")


class TableFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"


FileArg = Annotated[Path, typer.Argument(help="a sweep YAML file", show_default=False)]
SweepArg = Annotated[int, typer.Argument(help="sweep id", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def prepare_database_dir() -> str:
    """The settings' database URL; a SQLite file's folder is created (first use of .sweeps/)."""
    from sqlalchemy.engine import make_url

    from shared.settings import get_settings

    url = get_settings().database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return url


def read_yaml(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None


# -- services -------------------------------------------------------------------------------


@app.command()
def up(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    host: Annotated[str, typer.Option(help="API address")] = "127.0.0.1",
    worker: Annotated[bool, typer.Option(help="start one worker too")] = True,
) -> None:
    """Embedded Redis + SQLite, the API and one worker in the foreground; Ctrl-C stops all."""
    from cli.embedded import (
        EmbeddedStack,
        interrupt_on_signals,
        load_or_create_token,
        running_stack,
    )

    _refuse_second_stack(running_stack())
    token = load_or_create_token()
    stack = EmbeddedStack(host=host, port=port, token=token, start_worker=worker)
    with interrupt_on_signals():
        try:
            err_console.print("starting Redis, migrations, API and worker ...", highlight=False)
            stack.start()
            _print_stack_banner(stack, token)
            while True:
                stack.check_children()
                time.sleep(0.5)
        except KeyboardInterrupt:
            err_console.print("stopping ...", highlight=False)
        finally:
            stack.stop()
    err_console.print("stopped", highlight=False)


def _refuse_second_stack(record: dict[str, Any] | None) -> None:
    if record:
        raise CliError(
            f"an embedded stack is already running here at {record.get('url')} "
            f"(pids {record.get('children')}); stop it with `sweeps down`"
        )


def _print_stack_banner(stack: Any, token: str) -> None:
    from cli.client import TOKEN_FILE
    from shared.settings import get_settings

    source = "SWEEPS_API_TOKEN" if get_settings().api_token else str(TOKEN_FILE)
    err_console.print(
        f"API   {stack.url}  (UI {stack.url}/ui, OpenAPI {stack.url}/docs)\n"
        f"token {token}  (from {source})\n"
        f"logs  {stack.state_dir / 'logs'}",
        highlight=False,
    )


@app.command()
def down() -> None:
    """Stop an embedded stack left running by `sweeps run --keep`."""
    from cli.embedded import stop_recorded_stack

    stopped = stop_recorded_stack()
    console.print(
        f"stopped {', '.join(stopped)}" if stopped else "nothing running", highlight=False
    )


@app.command()
def api(
    port: Annotated[int, typer.Option(help="port")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """The HTTP API (uvicorn) on SWEEPS_DATABASE_URL and SWEEPS_BROKER_URL."""
    import uvicorn

    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


@app.command()
def worker(
    gpu: Annotated[
        int | None, typer.Option(help="pin this worker to one GPU (sets CUDA_VISIBLE_DEVICES)")
    ] = None,
    runs_per_gpu: Annotated[
        int | None, typer.Option(help="runs trained at once (default SWEEPS_RUNS_PER_GPU)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """A Celery worker that trains runs from the queue."""
    from worker.celery_app import run_worker

    run_worker(gpu=gpu, runs_per_gpu=runs_per_gpu, loglevel=loglevel)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Apply database migrations to SWEEPS_DATABASE_URL (up to head by default)."""
    from shared.db.migrate import upgrade

    upgrade(prepare_database_dir(), revision)
    console.print(f"database at {revision}", highlight=False)


@token_app.command("create")
def token_create(name: Annotated[str, typer.Argument(help="who or what the token is for")]) -> None:
    """Create a token and print its secret (shown once; only a hash is stored)."""
    from shared.db.session import session_scope
    from shared.db.tokens import create_token

    prepare_database_dir()
    with session_scope() as session:
        _, secret = create_token(session, name=name)
    emit(secret)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="the token's name")]) -> None:
    """Revoke every live token with this name."""
    from shared.db.session import session_scope
    from shared.db.tokens import revoke_token

    prepare_database_dir()
    with session_scope() as session:
        revoked = revoke_token(session, name)
    if not revoked:
        raise CliError(f"no live token named {name!r}")
    console.print(f"revoked {len(revoked)} token(s) named {name!r}", highlight=False)


@token_app.command("list")
def token_list() -> None:
    """Live tokens: id, name, created, last used (secrets are never stored)."""
    from shared.db.session import session_scope
    from shared.db.tokens import list_tokens

    prepare_database_dir()
    with session_scope() as session:
        for token in list_tokens(session):
            used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "-"
            created = token.created_at.isoformat(timespec="seconds")
            emit(f"{token.id}\t{token.name}\t{created}\t{used}")


# -- the one-command path ------------------------------------------------------------------


@app.command()
def run(
    file: FileArg,
    keep: Annotated[
        bool, typer.Option(help="leave the API running; print its URL and token")
    ] = False,
    force: Annotated[bool, typer.Option(help="train again even if a result exists")] = False,
    port: Annotated[int, typer.Option(help="API port (a free one if taken)")] = 8000,
    interval: Annotated[float, typer.Option(help="seconds between progress updates")] = 1.0,
) -> None:
    """Start the embedded stack, submit FILE, show progress, print the table, stop everything."""
    from cli.datacheck import missing_data_message
    from cli.embedded import (
        EmbeddedStack,
        interrupt_on_signals,
        load_or_create_token,
        pick_port,
        running_stack,
    )
    from shared.spec import SpecError, parse_sweep

    yaml_text = read_yaml(file)
    try:
        parse_sweep(yaml_text)
    except SpecError as exc:
        raise CliError(f"{file}: {exc}") from None
    problem = missing_data_message(yaml_text)
    if problem:
        raise CliError(problem, exit_code=2)

    existing = running_stack()
    if existing:
        # A kept stack is running here: use it and leave it running.
        err_console.print(f"using the embedded stack at {existing['url']}", highlight=False)
        with ApiClient.from_settings() as client:
            sweep_id = _submit(client, file, yaml_text, force=force)
            _watch(client, sweep_id, interval=interval)
        return

    token = load_or_create_token()
    stack = EmbeddedStack(port=pick_port("127.0.0.1", port), token=token, keep=keep)
    with interrupt_on_signals():
        try:
            err_console.print("starting Redis, migrations, API and worker ...", highlight=False)
            stack.start()
            with ApiClient(stack.url, token) as client:
                sweep_id = _submit(client, file, yaml_text, force=force)
                try:
                    failed = _watch(client, sweep_id, interval=interval, check=stack.check_children)
                except KeyboardInterrupt:
                    _cancel_on_interrupt(client, sweep_id)
                    raise
            if keep:
                _print_stack_banner(stack, token)
                err_console.print("stop it with `sweeps down`", highlight=False)
                stack.detach()
        except KeyboardInterrupt:
            err_console.print("interrupted; stopping", highlight=False)
            raise typer.Exit(130) from None
        finally:
            stack.stop()
    if failed:
        raise typer.Exit(1)


def _cancel_on_interrupt(client: ApiClient, sweep_id: int) -> None:
    """Ctrl-C during `run`: cancel the sweep so its runs end as cancelled, not half-running."""
    err_console.print(f"cancelling sweep {sweep_id} ...", highlight=False)
    try:
        client.post(f"/sweeps/{sweep_id}/cancel")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = client.get(f"/sweeps/{sweep_id}").get("runs", [])
            if all(r.get("status") not in ("queued", "running") for r in runs):
                break
            time.sleep(0.5)
    except (CliError, KeyboardInterrupt):
        pass


# -- client commands -----------------------------------------------------------------------


@app.command()
def submit(
    file: FileArg,
    force: Annotated[bool, typer.Option(help="train again even if a result exists")] = False,
    name: Annotated[str | None, typer.Option(help="sweep name (default: the file name)")] = None,
) -> None:
    """Submit FILE to the API; prints the sweep id."""
    yaml_text = read_yaml(file)
    with ApiClient.from_settings() as client:
        _submit(client, file, yaml_text, force=force, name=name)


def _submit(
    client: ApiClient, file: Path, yaml_text: str, *, force: bool, name: str | None = None
) -> int:
    body = {"yaml": yaml_text, "name": name or file.stem}
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


@app.command()
def preview(file: FileArg, json_out: JsonOpt = False) -> None:
    """Expand FILE locally (no server): matrix_id, slug, params, experiment_name, config_hash."""
    from shared.settings import get_settings
    from shared.spec import SpecError, parse_sweep

    yaml_text = read_yaml(file)
    try:
        sweep = parse_sweep(yaml_text, max_runs=get_settings().max_runs)
    except SpecError as exc:
        raise CliError(f"{file}: {exc}") from None
    runs = [
        {
            "matrix_id": r.matrix_id,
            "slug": r.slug,
            "params": r.params,
            "experiment_name": r.experiment_name,
            "config_hash": r.config_hash,
        }
        for r in sweep.runs
    ]
    if json_out:
        print_json(console, runs)
    else:
        print_preview(console, runs)


@app.command()
def inspect(
    file: FileArg,
    json_out: JsonOpt = False,
    summary: Annotated[bool, typer.Option(help="also print each model's structure")] = False,
) -> None:
    """Build each run's model locally and count its parameters (runs the file's model code)."""
    from shared.spec import SpecError
    from worker.engine.inspect import inspect_sweep

    yaml_text = read_yaml(file)
    try:
        rows = inspect_sweep(yaml_text)
    except SpecError as exc:
        raise CliError(f"{file}: {exc}") from None
    if json_out:
        print_json(console, rows)
        return
    print_inspect(console, rows)
    if summary:
        for row in rows:
            emit(f"\n# {row.get('matrix_id')} {row.get('slug', '')}\n{row.get('summary')}")


@app.command()
def status(
    sweep: Annotated[int | None, typer.Argument(help="sweep id (omit to list sweeps)")] = None,
    json_out: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="sweeps to list")] = 20,
) -> None:
    """List recent sweeps, or show one sweep's runs."""
    with ApiClient.from_settings() as client:
        if sweep is None:
            data = client.get("/sweeps", limit=limit)
            items = data.get("items", data) if isinstance(data, dict) else data
            print_json(console, data) if json_out else print_sweep_list(console, items)
        else:
            data = client.get(f"/sweeps/{sweep}")
            print_json(console, data) if json_out else print_sweep(console, data)


@app.command()
def watch(
    sweep: SweepArg,
    interval: Annotated[float, typer.Option(help="seconds between updates")] = 1.0,
) -> None:
    """Live progress of every run of SWEEP; prints the comparison table when all have ended."""
    with ApiClient.from_settings() as client:
        try:
            failed = _watch(client, sweep, interval=interval)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    if failed:
        raise typer.Exit(1)


def _watch(client: ApiClient, sweep_id: int, *, interval: float, check: Any = None) -> int:
    """Progress until every run ends, then the markdown table; returns the number failed."""
    latest: dict[int, dict[str, Any]] = {}
    final: set[int] = set()  # finished runs whose last values have been fetched

    def fetch() -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        if check is not None:
            check()
        runs = client.get(f"/sweeps/{sweep_id}").get("runs", [])
        for run_ in runs:
            run_id, status_ = int(run_["id"]), str(run_.get("status"))
            # Latest values only for runs that are training, plus once after each one ends.
            if status_ == "queued" or run_id in final:
                continue
            detail = client.get(f"/runs/{run_id}")
            latest[run_id] = {k: p.get("value") for k, p in (detail.get("latest") or {}).items()}
            if status_ != "running":
                final.add(run_id)
        return runs, latest

    with SweepView(console) as view:
        runs = poll_until_finished(fetch, view, interval=interval)
    failed = [r for r in runs if r.get("status") == "failed"]
    for run_ in failed:
        error = str(run_.get("error") or "no error recorded").strip().splitlines()
        err_console.print(
            f"run {run_['id']} failed: {error[-1] if error else ''} "
            f"(details: sweeps status {sweep_id} --json)",
            highlight=False,
        )
    emit(client.get_text(f"/sweeps/{sweep_id}/table", format="md"))
    return len(failed)


@app.command()
def table(
    sweep: SweepArg,
    format: Annotated[TableFormat, typer.Option("--format", "-f", help="md, csv or json")] = (
        TableFormat.md
    ),
    sort: Annotated[str | None, typer.Option(help="column to sort by")] = None,
) -> None:
    """The comparison table of SWEEP (like the seed's)."""
    with ApiClient.from_settings() as client:
        _print_table(client, f"/sweeps/{sweep}/table", format, sort=sort)


def _print_table(client: ApiClient, path: str, format: TableFormat, **params: Any) -> None:
    params["format"] = format.value
    if format is TableFormat.json:
        print_json(console, client.get(path, **params))
    else:
        emit(client.get_text(path, **params))


@app.command()
def compare(
    runs: Annotated[str | None, typer.Option(help="comma-separated run ids")] = None,
    sweeps: Annotated[str | None, typer.Option(help="comma-separated sweep ids")] = None,
    format: Annotated[TableFormat, typer.Option("--format", "-f", help="md, csv or json")] = (
        TableFormat.md
    ),
    sort: Annotated[str | None, typer.Option(help="column to sort by")] = None,
) -> None:
    """One comparison table across runs and sweeps."""
    if not runs and not sweeps:
        raise CliError("give --runs and/or --sweeps (comma-separated ids)")
    with ApiClient.from_settings() as client:
        _print_table(client, "/compare", format, runs=runs, sweeps=sweeps, sort=sort)


@app.command()
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
    series = data.get("series", data)
    for name, points in series.items():
        emit(f"# {name}")
        for step, value in points:
            emit(f"{step}\t{value}")


@app.command()
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


@app.command()
def retry(sweep: SweepArg) -> None:
    """Queue a sweep's failed and cancelled runs again."""
    with ApiClient.from_settings() as client:
        result = client.post(f"/sweeps/{sweep}/retry")
    console.print(f"retry requested for sweep {sweep}{_summary(result)}", highlight=False)


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    if "retried" in result:
        return f": {len(result['retried'])} run(s) queued again"
    if "cancel_requested" in result and "cancelled" in result:
        return (
            f": {len(result['cancelled'])} queued run(s) cancelled, "
            f"{len(result['cancel_requested'])} running run(s) asked to stop"
        )
    if "status" in result:
        return f" (status {result['status']})"
    return ""
