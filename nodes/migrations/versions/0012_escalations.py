"""Emergency escalations: proposed, approved by a second operator, ended (issue 13)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("partners", sa.Text, nullable=False),
        sa.Column("widening", sa.Text, nullable=False),
        sa.Column("hours", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("policy_hash", sa.String(80), nullable=False),
        sa.Column("proposed_by", sa.Integer, sa.ForeignKey("tokens.id"), nullable=False),
        sa.Column("proposed_at", UTCDateTime, nullable=False),
        sa.Column("approved_by", sa.Integer, sa.ForeignKey("tokens.id"), nullable=True),
        sa.Column("approved_at", UTCDateTime, nullable=True),
        sa.Column("ends_at", UTCDateTime, nullable=True),
        sa.Column("revoked_by", sa.Integer, sa.ForeignKey("tokens.id"), nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("closed_at", UTCDateTime, nullable=True),
        sa.CheckConstraint(
            "approved_by IS NULL OR approved_by <> proposed_by", name="ck_escalations_two_people"
        ),
    )
    op.create_index("ix_escalations_ends_at", "escalations", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_escalations_ends_at", table_name="escalations")
    op.drop_table("escalations")
