"""The node's tables (SQLAlchemy Core). Alembic migrations create and upgrade them.

Reports are stored whole: one ``reports`` row with provenance, its cells in the schema's own
typed table (one column per field, so SQL can group by them over millions of rows). A
correction never overwrites: the older row gets ``superseded_by`` and stays readable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from schemas.model import FieldType, ReportSchema
from schemas.standard import STANDARD_SCHEMAS

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; SQLite would otherwise hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; the node stores only UTC-aware times")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("schemas", Text, nullable=False),  # JSON array of schema ids an agency may push
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),  # None: valid until revoked
    Column("last_used_at", UTCDateTime, nullable=True),  # written at most once a minute
    Column("rotated_at", UTCDateTime, nullable=True),
    # the secret replaced by the last rotation, valid until previous_expires_at (its grace)
    Column("previous_secret_sha256", String(64), nullable=True),
    Column("previous_expires_at", UTCDateTime, nullable=True),
    Index("uq_tokens_previous_secret_sha256", "previous_secret_sha256", unique=True),
)

reports = Table(
    "reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("schema_id", String(64), nullable=False, index=True),
    Column("token_id", Integer, ForeignKey("tokens.id"), nullable=False, index=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("generated_at", UTCDateTime, nullable=True),  # when the agency produced it, if said
    Column("idempotency_key", String(200), nullable=True),
    Column("content_sha256", String(64), nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("superseded_rows", Integer, nullable=False),
    UniqueConstraint("token_id", "idempotency_key", name="uq_reports_token_idempotency"),
)

# A report too large for one request arrives as an upload session: parts in any order,
# each replaceable until the commit stores the whole file as one report (or nothing).
upload_sessions = Table(
    "upload_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),  # random: names it in URLs
    Column("token_id", Integer, ForeignKey("tokens.id"), nullable=False, index=True),
    Column("schema_id", String(64), nullable=False),
    Column("media_type", String(40), nullable=False),
    Column("generated_at", UTCDateTime, nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("state", String(12), nullable=False),  # open, committed
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=True),
    UniqueConstraint("token_id", "idempotency_key", name="uq_upload_sessions_token_idempotency"),
)

# A dashboard sign-in: the browser holds the secret in a cookie, the node only its hash.
# It lives in the database, not in a worker's memory, so any worker serves the next page
# and a sign-out ends it everywhere at once.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("csrf", String(64), nullable=False),  # echoed by every form of this session
    Column("token_id", Integer, ForeignKey("tokens.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),  # signed out
)

upload_parts = Table(
    "upload_parts",
    metadata,
    Column(
        "session_id",
        Integer,
        ForeignKey("upload_sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("number", Integer, primary_key=True),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

_SQL_TYPES: dict[FieldType, Any] = {
    FieldType.AREA: String(32),
    FieldType.WEEK: String(8),
    FieldType.CODE: String(32),
    FieldType.DATE: String(10),  # ISO text sorts as dates do, on both backends
    FieldType.COUNT: BigInteger,
    FieldType.TEXT: String(64),
}


def cell_table_name(schema: ReportSchema) -> str:
    return f"cells_{schema.name}_v{schema.version}"


def build_cell_table(schema: ReportSchema, target: MetaData) -> Table:
    """The typed cell table of a schema; used by the models below and by migrations."""
    name = cell_table_name(schema)
    columns: list[Any] = [
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("report_id", Integer, ForeignKey("reports.id"), nullable=False),
    ]
    for column in schema.stored_columns:
        required = column == "week" or schema.field_by_name[column].required
        columns.append(
            Column(column, _SQL_TYPES[schema.dimension_type(column)], nullable=not required)
        )
    columns.append(Column("superseded_by", Integer, ForeignKey("reports.id"), nullable=True))
    return Table(
        name,
        target,
        *columns,
        Index(f"ix_{name}_report", "report_id"),
        Index(f"ix_{name}_cell", *schema.cell_key),
    )


cell_tables: dict[str, Table] = {s.id: build_cell_table(s, metadata) for s in STANDARD_SCHEMAS}
