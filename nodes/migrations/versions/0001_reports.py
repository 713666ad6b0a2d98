"""Tokens, reports and the cell tables of the four standard schemas."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.tables import UTCDateTime, build_cell_table
from schemas.registry import SchemaRegistry

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Published schemas never change, so building their tables from the definitions is stable.
SCHEMA_IDS = ("weekly_epi@1", "line_list@1", "hospital_capacity@1", "humanitarian_sitrep@1")


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("schemas", sa.Text, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schema_id", sa.String(64), nullable=False, index=True),
        sa.Column("token_id", sa.Integer, sa.ForeignKey("tokens.id"), nullable=False, index=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("superseded_rows", sa.Integer, nullable=False),
        sa.UniqueConstraint("token_id", "idempotency_key", name="uq_reports_token_idempotency"),
    )
    registry = SchemaRegistry()
    scratch = sa.MetaData()
    sa.Table("reports", scratch, sa.Column("id", sa.Integer, primary_key=True))
    bind = op.get_bind()
    for schema_id in SCHEMA_IDS:
        build_cell_table(registry.get(schema_id), scratch).create(bind)


def downgrade() -> None:
    registry = SchemaRegistry()
    from nodes.tables import cell_table_name

    for schema_id in reversed(SCHEMA_IDS):
        op.drop_table(cell_table_name(registry.get(schema_id)))
    op.drop_table("reports")
    op.drop_table("tokens")
