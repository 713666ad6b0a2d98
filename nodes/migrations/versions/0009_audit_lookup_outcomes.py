"""The audit lookup index gains each entry's outcome, partner, schema and rule (issue 9).

`/metrics` counts refusals per partner, schema and rule; reading the log's release entries
at every scrape grew with the log. The lookup index (`nodes.audit.lookup`) now keeps those
four fields, normalized, so the count is one grouped query on ``ix_audit_lookup_outcomes``.

Rows already indexed are backfilled from the entries' stored canonical bytes, parsed the
way new rows are (`nodes.audit.lookup.indexed_fields`), in pages by seq: the log is never
held in memory. Downgrading drops the columns and the index; nothing else depends on them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nodes.audit.lookup import indexed_fields

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PAGE = 2000
_COLUMNS = ("outcome", "partner", "schema", "rule")


def upgrade() -> None:
    op.add_column("audit_lookup", sa.Column("outcome", sa.String(32), nullable=True))
    op.add_column("audit_lookup", sa.Column("partner", sa.String(512), nullable=True))
    op.add_column("audit_lookup", sa.Column("schema", sa.String(512), nullable=True))
    op.add_column("audit_lookup", sa.Column("rule", sa.String(128), nullable=True))
    _backfill(op.get_bind())
    op.create_index("ix_audit_lookup_outcomes", "audit_lookup", ["action", *_COLUMNS])


def _backfill(conn: sa.Connection) -> None:
    """Fill the new columns of every indexed row, one page of entries at a time."""
    meta = sa.MetaData()
    lookup = sa.Table(
        "audit_lookup",
        meta,
        sa.Column("seq", sa.BigInteger, primary_key=True),
        *(sa.Column(name, sa.String) for name in _COLUMNS),
    )
    entries = sa.Table(
        "audit_entries",
        meta,
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("entry", sa.LargeBinary),
    )
    update = (
        lookup.update()
        .where(lookup.c.seq == sa.bindparam("b_seq"))
        .values({name: sa.bindparam(f"b_{name}") for name in _COLUMNS})
    )
    last = -1
    while True:
        rows = conn.execute(
            sa.select(entries.c.seq, entries.c.entry)
            .join(lookup, lookup.c.seq == entries.c.seq)
            .where(entries.c.seq > last)
            .order_by(entries.c.seq)
            .limit(_PAGE)
        ).all()
        if not rows:
            return
        batch = []
        for seq, data in rows:
            fields = indexed_fields(bytes(data))
            batch.append({"b_seq": seq, **{f"b_{name}": fields[name] for name in _COLUMNS}})
        conn.execute(update, batch)
        last = int(rows[-1].seq)


def downgrade() -> None:
    op.drop_index("ix_audit_lookup_outcomes", table_name="audit_lookup")
    with op.batch_alter_table("audit_lookup") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
