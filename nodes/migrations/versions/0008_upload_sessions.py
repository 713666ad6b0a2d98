"""Upload sessions: a report too large for one request, sent in parts (issue 9).

A session belongs to the token that opened it and names its schema and media type; its
parts are kept as they arrived (any order, each replaceable) until the commit stores the
whole file as one report, in one transaction, and deletes them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("token_id", sa.Integer, sa.ForeignKey("tokens.id"), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("report_id", sa.Integer, sa.ForeignKey("reports.id"), nullable=True),
        sa.UniqueConstraint("public_id", name="uq_upload_sessions_public_id"),
        sa.UniqueConstraint(
            "token_id", "idempotency_key", name="uq_upload_sessions_token_idempotency"
        ),
    )
    op.create_index("ix_upload_sessions_token_id", "upload_sessions", ["token_id"])
    op.create_table(
        "upload_parts",
        sa.Column(
            "session_id",
            sa.Integer,
            sa.ForeignKey("upload_sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("upload_parts")
    op.drop_index("ix_upload_sessions_token_id", table_name="upload_sessions")
    op.drop_table("upload_sessions")
