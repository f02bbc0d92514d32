"""Token roles and sweep owners.

Revision ID: 0003_door
Revises: 0002
Create Date: 2026-12-05

- api_tokens.role: `read` (GET routes only), `write` (submit; cancel and retry its own sweeps)
  or `admin` (cancel and retry any sweep). Tokens that exist when this runs become `admin`:
  until now every token could do everything, and least surprise for current users is that
  their tokens keep doing so. New tokens are `write` unless created with `--role`.
- sweeps.owner_token_id: the token that submitted the sweep. Sweeps from before this revision
  have none, so only admin tokens (every existing token, above) may cancel or retry them.

Self-contained like 0001: the schema as it is at this revision, not the models' view of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_door"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("read", "write", "admin")
CHECK = "ck_api_tokens_token_role"
OWNER_FK = "fk_sweeps_owner_token_id_api_tokens"


def upgrade() -> None:
    role = sa.Enum(*ROLES, name="token_role", native_enum=False, create_constraint=False, length=16)
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("role", role, nullable=True))
    op.execute("UPDATE api_tokens SET role = 'admin'")
    allowed = ", ".join(f"'{value}'" for value in ROLES)
    # batch mode: SQLite cannot add NOT NULL or a CHECK in place, so the table is copied.
    with op.batch_alter_table("api_tokens", recreate="auto") as batch:
        batch.alter_column("role", existing_type=role, nullable=False)
        batch.create_check_constraint(op.f(CHECK), f"role IN ({allowed})")
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("owner_token_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f(OWNER_FK), "api_tokens", ["owner_token_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_constraint(op.f(OWNER_FK), type_="foreignkey")
        batch.drop_column("owner_token_id")
    with op.batch_alter_table("api_tokens", recreate="auto") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.drop_column("role")
