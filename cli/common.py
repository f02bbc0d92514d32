"""What the command modules share: the consoles, argument types, reading files."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cli.client import CliError

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.sweepfile import SpecError, SweepSpec

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


@dataclass(frozen=True)
class SweepFile:
    """A sweep file as read from disk, with the bases its `$extends` chain names."""

    path: Path
    text: str
    bases: dict[str, str] = field(default_factory=dict)  # by name relative to `path`

    def parse(self, **limits: Any) -> SweepSpec:
        """The expanded sweep (bases merged in); CliError naming the file and line."""
        from shared.sweepfile import SpecError, parse_with_extends

        try:
            return parse_with_extends(self.text, self.path.name, self.bases.get, **limits)
        except SpecError as exc:
            raise CliError(self.describe(exc)) from None

    def describe(self, exc: SpecError) -> str:
        return str(exc) if exc.file is not None else f"{self.path}: {exc}"


def parse_options_here(settings: Settings | None = None) -> dict[str, Any]:
    """This machine's plugins and project (SWEEPS_PROJECT_ROOT), for parsing a file here;
    CliError for a project root that is no folder."""
    from shared.plugins import parse_options
    from shared.settings import get_settings
    from shared.sweepfile import SpecError

    try:
        return parse_options(settings or get_settings())
    except SpecError as exc:
        raise CliError(str(exc)) from None


def read_sweep(path: Path) -> SweepFile:
    """The file and, when it uses `$extends`, its bases read from disk (relative to it)."""
    from shared.sweepfile import SpecError, merge_extends
    from shared.sweepfile.extends import uses_extends

    text = read_yaml(path)
    bases: dict[str, str] = {}

    def load(name: str) -> str | None:
        target = path.parent / name
        if not target.is_file():
            return None
        bases[name] = read_yaml(target)
        return bases[name]

    sweep_file = SweepFile(path, text, bases)
    if uses_extends(text):
        try:
            merge_extends(text, path.name, load)
        except SpecError as exc:
            raise CliError(sweep_file.describe(exc)) from None
    return sweep_file
