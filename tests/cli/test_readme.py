"""README.md and docs/FORMAT.md stay true: every command they show parses as the real CLI,
make target or compose service, and every setting and sweep-file key is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer._click.core import Context  # typer vendors its own click
from typer.core import TyperGroup
from typer.main import get_command

from cli.main import app
from shared.settings import Settings
from shared.sweepfile import names

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
FORMAT = (REPO / "docs" / "FORMAT.md").read_text()


def shell_lines(markdown: str) -> list[str]:
    """Command lines of the ```sh blocks, comments cut off."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.DOTALL):
        for line in block.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


COMMANDS = shell_lines(README)


def check_sweeps_command(args: list[str]) -> None:
    """Resolve the subcommand chain and parse its options as click would; runs nothing."""
    command = get_command(app)
    name = "sweeps"
    while isinstance(command, TyperGroup):
        assert args, f"`{name}` needs a subcommand"
        sub = command.get_command(Context(command), args[0])
        assert sub is not None, f"`{name} {args[0]}` is not a command"
        name, command, args = f"{name} {args[0]}", sub, args[1:]
    command.make_context(name, list(args))


def test_readme_shows_commands() -> None:
    assert "make run" in COMMANDS and "make test" in COMMANDS
    assert sum(c.startswith("sweeps ") for c in COMMANDS) >= 10


@pytest.mark.parametrize("line", [c for c in COMMANDS if "sweeps " in c])
def test_readme_sweeps_commands_parse(line: str) -> None:
    args = shlex.split(line)
    if args[:3] == ["docker", "compose", "exec"]:
        assert args[3] in compose_services()
        args = args[4:]
    assert args[0] == "sweeps"
    check_sweeps_command(args[1:])


def compose_services() -> set[str]:
    return set(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])


def test_readme_make_and_compose_commands_exist() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    for line in COMMANDS:
        args = shlex.split(line)
        if args[0] == "make":
            assert set(args[1:]) <= targets, line
        if args[:2] == ["docker", "compose"] and args[2] == "logs":
            assert args[-1] in compose_services(), line
    assert "make install" in README and "install" in targets


def test_readme_documents_every_setting() -> None:
    for field in Settings.model_fields:
        assert f"`SWEEPS_{field.upper()}`" in README, f"SWEEPS_{field.upper()} is not in README"


def test_format_doc_covers_every_key() -> None:
    for key in names.KNOWN_KEYS:
        assert f"`{key}`" in FORMAT, f"docs/FORMAT.md does not describe `{key}`"
    assert "(docs/FORMAT.md)" in README
