"""Alembic environment: the schema is shared.db.models; the URL comes from the caller.

Where the URL comes from, first match wins:
1. `alembic -x url=postgresql+psycopg://...` on the command line;
2. `config.attributes["connection"]` (an open Connection) or the `sqlalchemy.url` option that
   shared.db.migrate sets;
3. get_settings().database_url (SWEEPS_DATABASE_URL, else the embedded SQLite file).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from shared.db.models import Base
from shared.db.session import make_engine
from shared.settings import get_settings

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or config.get_main_option("sqlalchemy.url") or get_settings().database_url


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection is not None else (url or "").split(":")[0]
    context.configure(
        connection=connection,
        url=url if connection is None else None,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=dialect.startswith("sqlite"),
        literal_binds=connection is None,
    )


def run_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`) without connecting."""
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
