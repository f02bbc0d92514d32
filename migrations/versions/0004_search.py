"""Sampled sweeps: sweeps.search.

Revision ID: 0004_search
Revises: 0003_door
Create Date: 2026-12-05

- sweeps.search: the sweep file's `search` (method, trials, metric, space, ...) as JSON, so
  that whoever asks for the next trials (the API at submit, a worker when a trial ends) reads
  it without parsing the file again; NULL for a sweep whose runs are all made at submit.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_search"
down_revision: str | None = "0003_door"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("search", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("search")
