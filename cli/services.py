"""Service commands: the embedded stack (up, run, down), api, worker, migrate, tokens."""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any

import typer

from cli.client import ApiClient, CliError
from cli.commands import submit_file, watch_sweep
from cli.common import (
    FileArg,
    console,
    err_console,
    parse_options_here,
    prepare_database_dir,
    read_sweep,
)
from cli.render import emit, finished_statuses


class Role(enum.StrEnum):
    """shared.db.models.TokenRole, without importing the database layer at the CLI's start."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


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


def down() -> None:
    """Stop an embedded stack left running by `sweeps run --keep`."""
    from cli.embedded import stop_recorded_stack

    stopped = stop_recorded_stack()
    console.print(
        f"stopped {', '.join(stopped)}" if stopped else "nothing running", highlight=False
    )


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
    from shared.artifacts import ArtifactStoreError
    from worker.celery_app import run_worker

    try:
        run_worker(gpu=gpu, runs_per_gpu=runs_per_gpu, loglevel=loglevel)
    except ArtifactStoreError as exc:
        raise CliError(str(exc)) from None


def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Apply database migrations to SWEEPS_DATABASE_URL (up to head by default)."""
    from shared.db.migrate import upgrade

    upgrade(prepare_database_dir(), revision)
    console.print(f"database at {revision}", highlight=False)


def token_create(
    name: Annotated[str, typer.Argument(help="who or what the token is for")],
    role: Annotated[
        Role,
        typer.Option(
            help="read: GET routes only; write: submit, and cancel and retry its own sweeps; "
            "admin: cancel and retry any sweep",
        ),
    ] = Role.WRITE,
) -> None:
    """Create a token and print its secret (shown once; only a hash is stored)."""
    from shared.db.models import TokenRole
    from shared.db.session import session_scope
    from shared.db.tokens import create_token

    prepare_database_dir()
    with session_scope() as session:
        _, secret = create_token(session, name=name, role=TokenRole(role.value))
    emit(secret)


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


def token_list() -> None:
    """Live tokens: id, name, created, last used, role (secrets are never stored)."""
    from shared.db.session import session_scope
    from shared.db.tokens import list_tokens

    prepare_database_dir()
    with session_scope() as session:
        for token in list_tokens(session):
            used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "-"
            created = token.created_at.isoformat(timespec="seconds")
            emit(f"{token.id}\t{token.name}\t{created}\t{used}\t{token.role.value}")


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

    sweep_file = read_sweep(file)
    yaml_text, bases = sweep_file.text, sweep_file.bases
    problem = missing_data_message(sweep_file.parse(**parse_options_here()).yaml_text)
    if problem:
        raise CliError(problem, exit_code=2)

    existing = running_stack()
    if existing:
        # A kept stack is running here: use it and leave it running.
        err_console.print(f"using the embedded stack at {existing['url']}", highlight=False)
        with ApiClient.from_settings() as client:
            sweep_id = submit_file(client, file, yaml_text, force=force, bases=bases)
            if watch_sweep(client, sweep_id, interval=interval):
                raise typer.Exit(1)
        return

    token = load_or_create_token()
    stack = EmbeddedStack(port=pick_port("127.0.0.1", port), token=token, keep=keep)
    with interrupt_on_signals():
        try:
            err_console.print("starting Redis, migrations, API and worker ...", highlight=False)
            stack.start()
            with ApiClient(stack.url, token) as client:
                sweep_id = submit_file(client, file, yaml_text, force=force, bases=bases)
                try:
                    failed = watch_sweep(
                        client, sweep_id, interval=interval, check=stack.check_children
                    )
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
        deadline, finished = time.monotonic() + 20, finished_statuses()
        while time.monotonic() < deadline:
            # The counts cover every run; the runs list is only the first page.
            counts = client.get(f"/sweeps/{sweep_id}", limit=1).get("counts", {})
            if all(status in finished for status, n in counts.items() if n):
                break
            time.sleep(0.5)
    except (CliError, KeyboardInterrupt):
        pass
