"""What the command modules share: the consoles, argument types, reading files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.client import CliError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

FileArg = Annotated[Path, typer.Argument(help="a sweep YAML file", show_default=False)]
SweepArg = Annotated[int, typer.Argument(help="sweep id", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class TableFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"


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
