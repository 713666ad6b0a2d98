"""The privacy budget ledger and stored releases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_ledger",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("cap_micro", sa.BigInteger, nullable=False),
        sa.Column("spent_micro", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint(
            "scope", "partner_id", "schema_id", "period", name="uq_budget_ledger_account"
        ),
        sa.CheckConstraint("spent_micro >= 0", name="ck_budget_ledger_spent"),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("data_version", sa.BigInteger, nullable=False),
        sa.Column("agreement_id", sa.String(64), nullable=False),
        sa.Column("policy_hash", sa.String(80), nullable=False),
        sa.Column("mechanism", sa.String(10), nullable=False),
        sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
        sa.Column("delta", sa.Float, nullable=True),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("noise", sa.Text, nullable=False),
        sa.Column("cells", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("released_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_releases_partner_cache", "releases", ["partner_id", "cache_key"])


def downgrade() -> None:
    op.drop_index("ix_releases_partner_cache", table_name="releases")
    op.drop_table("releases")
    op.drop_table("budget_ledger")
