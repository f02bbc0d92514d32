"""Run the Alembic migrations from code or the command line: `python -m shared.db.migrate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from shared.settings import get_settings

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """The Alembic Config for this project, pointed at `url` (default: the settings' URL)."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; a password may contain one.
    config.set_main_option(
        "sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%")
    )
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Migrate the database at `url` down to `revision` (default: an empty database)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str | None = None) -> None:
    """Print the revision the database is at."""
    command.current(alembic_config(url))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.db.migrate", description=__doc__)
    parser.add_argument("action", choices=["upgrade", "downgrade", "current"])
    parser.add_argument("revision", nargs="?", help="target revision (head / base by default)")
    parser.add_argument("--url", help="database URL (default: SWEEPS_DATABASE_URL)")
    args = parser.parse_args(argv)
    if args.action == "upgrade":
        upgrade(args.url, args.revision or "head")
    elif args.action == "downgrade":
        downgrade(args.url, args.revision or "base")
    else:
        current(args.url)


if __name__ == "__main__":
    main()
