"""Correction notices: which partner releases an agency's correction affected (issue 13).

- ``correction_notices``: the provider's notices, one per partner and correction, kept.
- ``received_notices``: the partner's side, each with the signed exchange that brought it.
- ``received_releases.superseded_by_notice``: the received notice that marks it superseded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "correction_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("report_id", sa.Integer, sa.ForeignKey("reports.id"), nullable=False),
        sa.Column("weeks", sa.Text, nullable=False),
        sa.Column("release_ids", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_correction_notices_partner", "correction_notices", ["partner_id", "id"])
    op.create_table(
        "received_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("peer_id", sa.String(32), sa.ForeignKey("peers.id"), nullable=False),
        sa.Column("notice_id", sa.Integer, nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(43), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("request_method", sa.String(10), nullable=False),
        sa.Column("request_url", sa.Text, nullable=False),
        sa.Column("request_headers", sa.Text, nullable=False),
        sa.Column("request_body", sa.LargeBinary, nullable=False),
        sa.Column("response_status", sa.Integer, nullable=False),
        sa.Column("response_headers", sa.Text, nullable=False),
        sa.Column("response_body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("peer_id", "notice_id", name="uq_received_notices_peer_id"),
    )
    with op.batch_alter_table("received_releases") as batch:
        batch.add_column(sa.Column("superseded_by_notice", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("received_releases") as batch:
        batch.drop_column("superseded_by_notice")
    op.drop_table("received_notices")
    op.drop_index("ix_correction_notices_partner", table_name="correction_notices")
    op.drop_table("correction_notices")
