"""Indexes the dashboard's pages read through (issue 11), measured by ``benchmarks/ui.py``.

- ``ix_releases_counts``: releases per partner, schema and agreement (the transparency and
  outflow pages, and the metrics) from the index alone, not from each release's row.
- ``ix_audit_lookup_outcome_seq``: the auditor's log filtered by outcome alone, newest first,
  without walking the whole lookup index.
- ``ix_audit_lookup_action_outcome_seq``: the newest refusals of one action (the operator's
  outflow page), and the log filtered by action and outcome, from the end of the index.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_releases_counts", "releases", ["status", "partner_id", "schema_id", "agreement_id"]
    )
    op.create_index("ix_audit_lookup_outcome_seq", "audit_lookup", ["outcome", "seq"])
    op.create_index(
        "ix_audit_lookup_action_outcome_seq", "audit_lookup", ["action", "outcome", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_audit_lookup_action_outcome_seq", table_name="audit_lookup")
    op.drop_index("ix_audit_lookup_outcome_seq", table_name="audit_lookup")
    op.drop_index("ix_releases_counts", table_name="releases")
