"""`sweeps`: run the embedded stack, the API or a worker, and drive the API from a terminal.

The whole command surface is registered here; the commands live in cli/services.py (processes)
and cli/commands.py (HTTP client and local file checks).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from cli import commands, results, services
from cli.client import CliError


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
token_app = typer.Typer(help="Create, list and revoke API tokens (uses the database directly).")
app.add_typer(token_app, name="token")

# The embedded stack and the processes of a deployment.
app.command()(services.run)
app.command()(services.up)
app.command()(services.down)
app.command()(services.api)
app.command()(services.worker)
app.command()(services.migrate)
token_app.command("create")(services.token_create)
token_app.command("list")(services.token_list)
token_app.command("revoke")(services.token_revoke)

# Working with sweep files and the API.
app.command()(commands.preview)
app.command()(commands.inspect)
app.command()(commands.submit)
app.command()(commands.status)
app.command()(commands.watch)
app.command()(commands.table)
app.command()(commands.compare)
app.command()(commands.metrics)
app.command()(commands.cancel)
app.command()(commands.retry)

# What a researcher publishes: the write-up, the trained model, TensorBoard curves.
app.command()(results.report)
app.command()(results.pull)
app.command()(results.export)
