"""Initial schema: sweeps, runs, long-form metrics, latest metrics, API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Self-contained on purpose (no imports from shared.db.models): a migration describes the schema
as it was at this revision, whatever the models say later. Names follow the models' naming
convention so constraints can be dropped by name in later revisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "reused")
SWEEP_STATUSES = ("active", "finished")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _status(name: str, values: tuple[str, ...]) -> sa.Enum:
    # Stored as VARCHAR(16) plus a CHECK constraint (not a native Postgres ENUM type), so a
    # later revision can add a status without ALTER TYPE.
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=False, length=16)


def _status_check(table: str, name: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"status IN ({allowed})", name=op.f(f"ck_{table}_{name}"))


def upgrade() -> None:
    _create_tokens_and_sweeps()
    _create_runs()
    _create_metrics()


def _create_tokens_and_sweeps() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("last_used_at", _timestamp(), nullable=True),
        sa.Column("revoked_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("yaml_text", sa.Text(), nullable=False),
        sa.Column("matrix_keys", _json(), nullable=False),
        sa.Column("status", _status("sweep_status", SWEEP_STATUSES), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
        _status_check("sweeps", "sweep_status", SWEEP_STATUSES),
    )
    op.create_index(op.f("ix_sweeps_created_at"), "sweeps", ["created_at"])


def _create_runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("matrix_id", sa.String(length=16), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("experiment_name", sa.Text(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("max_inputs", sa.BigInteger(), nullable=True),
        sa.Column("status", _status("run_status", RUN_STATUSES), nullable=False),
        sa.Column("reused_from_id", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", _timestamp(), nullable=True),
        sa.Column("heartbeat_at", _timestamp(), nullable=True),
        sa.Column("worker_host", sa.String(length=200), nullable=True),
        sa.Column("device", sa.String(length=200), nullable=True),
        sa.Column("provenance", _json(), nullable=True),
        sa.Column("inputs_seen", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("enqueued_at", _timestamp(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reused_from_id"], ["runs.id"],
            name=op.f("fk_runs_reused_from_id_runs"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name=op.f("fk_runs_sweep_id_sweeps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("sweep_id", "matrix_id", name=op.f("uq_runs_sweep_id")),
        _status_check("runs", "run_status", RUN_STATUSES),
    )  # fmt: skip
    op.create_index(op.f("ix_runs_config_hash"), "runs", ["config_hash"])
    op.create_index(op.f("ix_runs_sweep_id"), "runs", ["sweep_id"])
    # The worker's reconciler scans by status and lease expiry.
    op.create_index("ix_runs_status_lease", "runs", ["status", "lease_expires_at"])


def _create_metrics() -> None:
    op.create_table(
        "metrics",
        # BIGSERIAL on Postgres; SQLite autoincrements only an INTEGER PRIMARY KEY.
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True, nullable=False,
        ),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        # Also the index behind series reads (run, key, step > after).
        sa.UniqueConstraint("run_id", "key", "step", name=op.f("uq_metrics_run_id")),
    )  # fmt: skip
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_latest_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_latest_metrics")),
    )


def downgrade() -> None:
    op.drop_table("latest_metrics")
    op.drop_table("metrics")
    op.drop_index("ix_runs_status_lease", table_name="runs")
    op.drop_index(op.f("ix_runs_sweep_id"), table_name="runs")
    op.drop_index(op.f("ix_runs_config_hash"), table_name="runs")
    op.drop_table("runs")
    op.drop_index(op.f("ix_sweeps_created_at"), table_name="sweeps")
    op.drop_table("sweeps")
    op.drop_table("api_tokens")
