"""One release per partner and cache key: identical concurrent requests share it (issue 8).

``releases.cache_slot`` holds the cache key of the release that answers it, unique per
partner (NULLs, the slots given up, are distinct on SQLite and PostgreSQL alike). Rows
stored before this revision: the first completed release of each partner and key takes
the slot, as the cache already served it; later duplicates and unfinished reservations
keep none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("releases", sa.Column("cache_slot", sa.String(64), nullable=True))
    op.execute(
        "UPDATE releases SET cache_slot = cache_key WHERE id IN ("
        "SELECT MIN(id) FROM releases WHERE status = 'released' "
        "GROUP BY partner_id, cache_key)"
    )
    op.create_index("uq_releases_cache_slot", "releases", ["partner_id", "cache_slot"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_releases_cache_slot", table_name="releases")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("cache_slot")
