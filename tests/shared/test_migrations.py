"""Alembic: an empty database goes up to head (matching the models exactly) and back to base."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from shared.db import migrate
from shared.db.models import Base

TABLES = {"sweeps", "runs", "metrics", "latest_metrics", "api_tokens"}
PG_ADMIN = os.environ.get("SWEEPS_TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (Postgres: a fresh database dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    if not PG_ADMIN:
        pytest.skip("Postgres migrations need SWEEPS_TEST_DATABASE_URL (set by .ci/run)")
    name = f"sweeps_migrate_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything the inspector sees, in a comparable form (names included)."""
    insp = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(insp.get_foreign_keys(table), key=lambda fk: str(fk["name"])),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "uniques": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
            "checks": sorted((c["name"], c["sqltext"]) for c in insp.get_check_constraints(table)),
        }
    return schema


def test_upgrade_to_head_matches_models_then_downgrade_to_base(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    engine = create_engine(empty_db)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() is not None
            assert compare_metadata(context, Base.metadata) == []
        migrated = _schema(engine)
    finally:
        engine.dispose()

    migrate.downgrade(empty_db)
    engine = create_engine(empty_db)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is None
        # The models' own DDL gives the same tables, constraints and names as the migration,
        # including what compare_metadata ignores (check constraints, constraint names).
        Base.metadata.create_all(engine)
        assert _schema(engine) == migrated
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()


def test_upgrade_is_repeatable_and_usable(empty_db: str) -> None:
    """Upgrading twice is a no-op, and the migrated schema accepts the models' rows."""
    from sqlalchemy.orm import Session

    from shared.db.models import Metric, Run, RunStatus, Sweep

    migrate.upgrade(empty_db)
    migrate.upgrade(empty_db)
    engine = create_engine(empty_db)
    try:
        with Session(engine) as session:
            sweep = Sweep(name="s", yaml_text="x: 1")
            session.add(sweep)
            session.flush()
            session.add(
                Run(sweep_id=sweep.id, matrix_id="1", slug="", experiment_name="e",
                    config={}, config_hash="h" * 64)
            )  # fmt: skip
            session.commit()
            run = session.query(Run).one()
            assert run.status is RunStatus.QUEUED
            # 0002: the pruned status, the phases column and a NaN flag on metrics.
            run.status, run.phases = RunStatus.PRUNED, {"train": 1.5}
            session.add(Metric(run_id=run.id, key="loss", step=1, value=0.0, is_nan=True))
            session.commit()
            session.expire_all()
            assert session.query(Run).one().status is RunStatus.PRUNED
            assert session.query(Run).one().phases == {"train": 1.5}
            assert session.query(Metric).one().is_nan is True
        with engine.begin() as conn, pytest.raises(Exception, match="(?i)check|constraint"):
            conn.execute(text("UPDATE runs SET status = 'bogus'"))
    finally:
        engine.dispose()
    migrate.downgrade(empty_db)


def test_tokens_from_before_roles_become_admin(empty_db: str) -> None:
    """0003_door: tokens that exist keep doing everything; their sweeps have no owner."""
    migrate.upgrade(empty_db, "0002")
    engine = create_engine(empty_db)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_tokens (name, token_hash, created_at) "
                    "VALUES ('old', :hash, CURRENT_TIMESTAMP)"
                ),
                {"hash": "a" * 64},
            )
            conn.execute(
                text(
                    "INSERT INTO sweeps (name, yaml_text, matrix_keys, status, created_at) "
                    "VALUES ('s', 'x: 1', '[]', 'active', CURRENT_TIMESTAMP)"
                )
            )
        migrate.upgrade(empty_db)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT role FROM api_tokens")).scalar_one() == "admin"
            assert conn.execute(text("SELECT owner_token_id FROM sweeps")).scalar_one() is None
        with engine.begin() as conn, pytest.raises(Exception, match="(?i)check|constraint"):
            conn.execute(text("UPDATE api_tokens SET role = 'root'"))
        migrate.downgrade(empty_db, "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM api_tokens")).scalar_one() == "old"
    finally:
        engine.dispose()
    migrate.downgrade(empty_db)
