"""Token lifetimes and rotation; the active policy's text in the database (issue 9).

``tokens`` gains an expiry, the time it was last used (written at most once a minute), and
the secret it replaced in its last rotation with the end of that secret's grace period.
``policy_loads`` keeps the document each version was loaded from, so every worker and
replica can switch to the newest one without reading the node directory; rows written
before this revision have none (the node then takes its policy file at start-up).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("expires_at", UTCDateTime, nullable=True))
    op.add_column("tokens", sa.Column("last_used_at", UTCDateTime, nullable=True))
    op.add_column("tokens", sa.Column("rotated_at", UTCDateTime, nullable=True))
    op.add_column("tokens", sa.Column("previous_secret_sha256", sa.String(64), nullable=True))
    op.add_column("tokens", sa.Column("previous_expires_at", UTCDateTime, nullable=True))
    op.create_index(
        "uq_tokens_previous_secret_sha256", "tokens", ["previous_secret_sha256"], unique=True
    )
    op.add_column("policy_loads", sa.Column("document", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policy_loads") as batch:
        batch.drop_column("document")
    op.drop_index("uq_tokens_previous_secret_sha256", table_name="tokens")
    with op.batch_alter_table("tokens") as batch:
        for column in (
            "previous_expires_at",
            "previous_secret_sha256",
            "rotated_at",
            "last_used_at",
            "expires_at",
        ):
            batch.drop_column(column)
