"""Held sweeps: the `held` run and sweep statuses and the sweep's hold columns.

Revision ID: 0005_scale
Revises: 0004_search
Create Date: 2026-12-05

- run status `held`: a queued run of a sweep whose first runs all failed the same way;
  workers do not start it until `retry` releases it (shared/domain/holds.py).
- sweep status `held`: no run is queued or running, and some are held.
- sweeps.hold_reason / held_at: why and when the sweep was held (NULL once released);
  sweeps.released_at: when a person released it (a released sweep is not held again).
- index runs (sweep_id, status): status counts and the sweep status rule on 10,000-run sweeps;
  index runs (reused_from_id): the runs linked to one that ends, found without a scan.

Self-contained like 0001: the schema as it is at this revision, not the models' view of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_scale"
down_revision: str | None = "0004_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_RUN = ("queued", "running", "succeeded", "failed", "cancelled", "reused", "pruned")
NEW_RUN = (*OLD_RUN, "held")
OLD_SWEEP = ("active", "finished")
NEW_SWEEP = (*OLD_SWEEP, "held")


def _replace_check(table: str, name: str, values: tuple[str, ...]) -> None:
    check = f"ck_{table}_{name}"
    condition = "status IN (" + ", ".join(f"'{value}'" for value in values) + ")"
    # batch mode: SQLite cannot alter a CHECK constraint in place, so the table is copied.
    with op.batch_alter_table(table, recreate="auto") as batch:
        batch.drop_constraint(op.f(check), type_="check")
        batch.create_check_constraint(op.f(check), condition)


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("hold_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    _replace_check("runs", "run_status", NEW_RUN)
    _replace_check("sweeps", "sweep_status", NEW_SWEEP)
    op.create_index("ix_runs_sweep_id_status", "runs", ["sweep_id", "status"])
    op.create_index("ix_runs_reused_from_id", "runs", ["reused_from_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_reused_from_id", table_name="runs")
    op.drop_index("ix_runs_sweep_id_status", table_name="runs")
    # Held runs were queued runs waiting for a person: they become queued again.
    op.execute("UPDATE runs SET status = 'queued' WHERE status = 'held'")
    op.execute("UPDATE sweeps SET status = 'active' WHERE status = 'held'")
    _replace_check("sweeps", "sweep_status", OLD_SWEEP)
    _replace_check("runs", "run_status", OLD_RUN)
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("released_at")
        batch.drop_column("held_at")
        batch.drop_column("hold_reason")
