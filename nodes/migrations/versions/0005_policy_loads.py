"""Policy loads: which policy version a node ran from when, so each change is audited once."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_loads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("policy_hash", sa.String(80), nullable=False),  # "sha256:" + 64 hex
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("loaded_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_loads")
