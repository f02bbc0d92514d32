"""Run phases, the `pruned` run status, and NaN-aware metrics.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

- runs.phases: where a run's wall time went (imports, data, build, compile, train, each
  validation and probe, metric writes, checkpoints), so a slow run can be explained.
- run status `pruned`: early stopping ends a hopeless run without calling it failed.
- metrics.is_nan / latest_metrics.is_nan: SQLite cannot store a NaN REAL (it reads back as
  NULL), so a NaN point is kept as value 0 with the flag set, on both databases alike.

Self-contained like 0001: the schema as it is at this revision, not the models' view of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "reused")
NEW_RUN_STATUSES = (*OLD_RUN_STATUSES, "pruned")
CHECK = "ck_runs_run_status"


def _status_check(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def _replace_status_check(values: tuple[str, ...]) -> None:
    # batch mode: SQLite cannot alter a CHECK constraint in place, so the table is copied.
    with op.batch_alter_table("runs", recreate="auto") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), _status_check(values))


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("phases", json, nullable=True))
    _replace_status_check(NEW_RUN_STATUSES)
    for table in ("metrics", "latest_metrics"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("is_nan", sa.Boolean(), nullable=False, server_default=sa.false())
            )


def downgrade() -> None:
    for table in ("latest_metrics", "metrics"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("is_nan")
    op.execute("UPDATE runs SET status = 'failed' WHERE status = 'pruned'")
    _replace_status_check(OLD_RUN_STATUSES)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("phases")
