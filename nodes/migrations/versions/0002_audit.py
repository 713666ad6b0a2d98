"""The audit log: head row, entries, lookup index, Merkle subtrees, checkpoints, peers' ones.

The head row is not created here: it needs the node id, which ``nodes.audit.log.initialize``
writes when the node first opens.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_leaf", sa.LargeBinary(32), nullable=True),
        sa.Column("prev_leaf", sa.LargeBinary(32), nullable=True),
    )
    op.create_table(
        "audit_entries",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_lookup",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_lookup_actor_seq", "audit_lookup", ["actor", "seq"])
    op.create_index("ix_audit_lookup_action_seq", "audit_lookup", ["action", "seq"])
    op.create_index("ix_audit_lookup_time", "audit_lookup", ["time"])
    op.create_table(
        "audit_nodes",
        sa.Column("height", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("line", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_audit_checkpoints_tree_size", "audit_checkpoints", ["tree_size"])
    op.create_table(
        "audit_peer_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("peer_id", sa.String(128), nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("line", sa.LargeBinary, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_audit_peer_checkpoints_peer_id", "audit_peer_checkpoints", ["peer_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("audit_peer_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")
    op.drop_table("audit_lookup")
    op.drop_table("audit_entries")
    op.drop_table("audit_head")
