"""Standing subscriptions: a partner's question answered on a cadence (issue 13).

The provider keeps each subscription and one row per period made (unique: the claim that
makes a period released and charged once); the partner keeps what it subscribed to at its
peers and one row per period fetched (unique: a period is stored once).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("cadence", sa.String(8), nullable=False),
        sa.Column("first_period", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.Column("ended_by", sa.String(16), nullable=True),
        sa.Column("end_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_subscriptions_partner", "subscriptions", ["partner_id"])
    op.create_table(
        "subscription_periods",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscription_id", sa.Integer, sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("release_id", sa.Integer, nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.Column("made_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("subscription_id", "period", name="uq_subscription_periods_period"),
    )
    op.create_table(
        "peer_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("peer_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.Integer, nullable=False),
        sa.Column("cadence", sa.String(8), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.Column("releases_left", sa.Integer, nullable=True),
        sa.Column("checked_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("peer_id", "subscription_id", name="uq_peer_subscriptions_id"),
    )
    op.create_table(
        "peer_subscription_periods",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("peer_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.Integer, nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("received_id", sa.Integer, nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint(
            "peer_id",
            "subscription_id",
            "period",
            name="uq_peer_subscription_periods_period",
        ),
    )


def downgrade() -> None:
    op.drop_table("peer_subscription_periods")
    op.drop_table("peer_subscriptions")
    op.drop_table("subscription_periods")
    op.drop_index("ix_subscriptions_partner", table_name="subscriptions")
    op.drop_table("subscriptions")
