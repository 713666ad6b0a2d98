"""The migrations build exactly the tables the code declares, on both backends.

Alembic's autogenerate comparison is the independent check: a table, column, index or
constraint declared in a ``Table`` but missing from the migrations (or the reverse) fails
here, instead of on an operator's upgraded node.
"""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import nodes.audit.tables
import nodes.escalations
import nodes.federation_tables
import nodes.ledger
import nodes.notices
import nodes.policy_loads
import nodes.releases.tables
import nodes.subscriptions
from nodes import migrate
from nodes.database import make_engine
from nodes.tables import metadata

DECLARING_MODULES = (
    nodes.audit.tables,
    nodes.escalations,
    nodes.federation_tables,
    nodes.ledger,
    nodes.notices,
    nodes.policy_loads,
    nodes.releases.tables,
    nodes.subscriptions,
)


def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    assert DECLARING_MODULES  # imported for their tables, which join the one metadata
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_every_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            config = migrate._config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
