"""Federation: peers and their keys, the replay store of nonces, releases received."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("added_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("removed_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "peer_keys",
        sa.Column("key_id", sa.String(43), primary_key=True),
        sa.Column("peer_id", sa.String(32), sa.ForeignKey("peers.id"), nullable=False),
        sa.Column("public_key", sa.String(43), nullable=False),
        sa.Column("valid_from", UTCDateTime, nullable=True),
        sa.Column("valid_until", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("added_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
    )
    op.create_index("ix_peer_keys_peer_id", "peer_keys", ["peer_id"])
    op.create_table(
        "nonces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(43), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("key_id", "nonce", name="uq_nonces_key_nonce"),
    )
    op.create_index("ix_nonces_expires_at", "nonces", ["expires_at"])
    op.create_table(
        "received_releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("peer_id", sa.String(32), sa.ForeignKey("peers.id"), nullable=False),
        sa.Column("release_id", sa.String(100), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(43), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("request_method", sa.String(10), nullable=False),
        sa.Column("request_url", sa.Text, nullable=False),
        sa.Column("request_headers", sa.Text, nullable=False),
        sa.Column("request_body", sa.LargeBinary, nullable=False),
        sa.Column("response_status", sa.Integer, nullable=False),
        sa.Column("response_headers", sa.Text, nullable=False),
        sa.Column("response_body", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_received_releases_peer_release", "received_releases", ["peer_id", "release_id"]
    )


def downgrade() -> None:
    op.drop_table("received_releases")
    op.drop_table("nonces")
    op.drop_table("peer_keys")
    op.drop_table("peers")
