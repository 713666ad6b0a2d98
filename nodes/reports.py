"""Storing pushed reports: all or nothing, idempotent, durable before acknowledged.

A correction is a new report; older rows of the same cells get ``superseded_by`` and stay
readable, so the history is never lost and queries read ``superseded_by IS NULL``.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, text, update
from sqlalchemy.exc import IntegrityError

from nodes.bulk import insert_rows
from nodes.database import reading, writing
from nodes.tables import cell_tables, reports
from nodes.tokens import TokenRecord
from schemas.errors import ConflictError, ForbiddenError, NotFoundError
from schemas.validation import Batch


@dataclass(frozen=True)
class StoredReport:
    id: int
    schema_id: str
    token_name: str
    received_at: dt.datetime
    idempotency_key: str | None
    content_sha256: str
    rows: int
    superseded_rows: int
    replayed: bool = False  # an earlier push with the same idempotency key answered this one


class IdempotencyConflictError(ConflictError):
    """An idempotency key was reused for a different report."""


def store(
    engine: Engine,
    *,
    batch: Batch,
    token: TokenRecord,
    idempotency_key: str | None,
    now: dt.datetime,
    dry_run: bool = False,
) -> StoredReport:
    """Store a validated report in one transaction; return only after it is committed."""
    if not token.may_push(batch.schema.id):
        raise ForbiddenError(f"token '{token.name}' may not push {batch.schema.id}")
    content = batch.content_sha256()
    for _attempt in range(2):
        try:
            with writing(engine, dry_run=dry_run) as conn:
                earlier = _find_by_key(conn, token, idempotency_key)
                if earlier is not None:
                    return _replay(earlier, batch.schema.id, content)
                return _insert(
                    conn, batch=batch, token=token, key=idempotency_key, content=content, now=now
                )
        except IntegrityError:
            # A concurrent push with the same key won the race (PostgreSQL); answer as it did.
            if idempotency_key is None:
                raise
    raise ConflictError("the report could not be stored because of concurrent pushes; retry")


def _find_by_key(conn: Connection, token: TokenRecord, key: str | None) -> StoredReport | None:
    if key is None:
        return None
    row = conn.execute(
        select(reports).where(reports.c.token_id == token.id, reports.c.idempotency_key == key)
    ).first()
    return None if row is None else _stored(row._mapping, token.name)


def _replay(earlier: StoredReport, schema_id: str, content: str) -> StoredReport:
    if earlier.schema_id != schema_id or earlier.content_sha256 != content:
        raise IdempotencyConflictError(
            f"idempotency key '{earlier.idempotency_key}' was used for report {earlier.id} with "
            "different content; use a new key for a different report"
        )
    return replace(earlier, replayed=True)


def _insert(
    conn: Connection,
    *,
    batch: Batch,
    token: TokenRecord,
    key: str | None,
    content: str,
    now: dt.datetime,
) -> StoredReport:
    schema = batch.schema
    table = cell_tables[schema.id]
    if conn.dialect.name == "postgresql":
        # Serialize writers of one schema so two corrections of a cell cannot both stay current.
        lock_id = zlib.crc32(table.name.encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
    report_id = conn.execute(
        reports.insert()
        .values(
            schema_id=schema.id,
            token_id=token.id,
            received_at=now,
            generated_at=batch.generated_at,
            idempotency_key=key,
            content_sha256=content,
            row_count=batch.rows,
            superseded_rows=0,
        )
        .returning(reports.c.id)
    ).scalar_one()
    columns = schema.stored_columns
    rows = zip(repeat(report_id), *(batch.columns[c] for c in columns), strict=False)
    insert_rows(conn, table, ("report_id", *columns), rows)
    superseded = _supersede(conn, schema.cell_key, table, report_id)
    if superseded:
        conn.execute(
            update(reports).where(reports.c.id == report_id).values(superseded_rows=superseded)
        )
    return StoredReport(
        id=report_id,
        schema_id=schema.id,
        token_name=token.name,
        received_at=now,
        idempotency_key=key,
        content_sha256=content,
        rows=batch.rows,
        superseded_rows=superseded,
    )


def _supersede(conn: Connection, cell_key: tuple[str, ...], table: Any, report_id: int) -> int:
    """Mark older current rows of the cells this report states as superseded by it."""
    new = table.alias("new")
    old = table.alias("old")
    older_current = (
        select(old.c.id)
        .join(new, and_(*(old.c[k] == new.c[k] for k in cell_key)))
        .where(
            new.c.report_id == report_id, old.c.report_id < report_id, old.c.superseded_by.is_(None)
        )
    )
    result = conn.execute(
        update(table).where(table.c.id.in_(older_current)).values(superseded_by=report_id)
    )
    return int(result.rowcount)


def _stored(m: Any, token_name: str) -> StoredReport:
    return StoredReport(
        id=m["id"],
        schema_id=m["schema_id"],
        token_name=token_name,
        received_at=m["received_at"],
        idempotency_key=m["idempotency_key"],
        content_sha256=m["content_sha256"],
        rows=m["row_count"],
        superseded_rows=m["superseded_rows"],
    )


def list_for(
    engine: Engine, *, token: TokenRecord, limit: int = 50, before: int | None = None
) -> list[StoredReport]:
    """The token's own reports, newest first, paginated by id."""
    query = (
        select(reports)
        .where(reports.c.token_id == token.id)
        .order_by(reports.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(reports.c.id < before)
    with reading(engine) as conn:
        return [_stored(r._mapping, token.name) for r in conn.execute(query)]


def get_for(engine: Engine, *, token: TokenRecord, report_id: int) -> StoredReport:
    with reading(engine) as conn:
        row = conn.execute(
            select(reports).where(reports.c.id == report_id, reports.c.token_id == token.id)
        ).first()
    if row is None:
        raise NotFoundError(f"no report {report_id} pushed with this token")
    return _stored(row._mapping, token.name)


def rows_of(
    engine: Engine, *, token: TokenRecord, report_id: int, offset: int = 0, limit: int = 100
) -> list[dict[str, object]]:
    """The stored rows of one of the token's reports, with the report that superseded each."""
    report = get_for(engine, token=token, report_id=report_id)
    table = cell_tables[report.schema_id]
    columns = [c for c in table.c if c.name not in ("id", "report_id")]
    query = (
        select(*columns)
        .where(table.c.report_id == report_id)
        .order_by(table.c.id)
        .offset(offset)
        .limit(limit)
    )
    with reading(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def summary(engine: Engine) -> list[dict[str, object]]:
    """Per schema: reports, stored rows and current rows. Operator's view, no content."""
    out: list[dict[str, object]] = []
    with reading(engine) as conn:
        for schema_id, table in sorted(cell_tables.items()):
            report_count = conn.execute(
                select(func.count()).select_from(reports).where(reports.c.schema_id == schema_id)
            ).scalar_one()
            stored = conn.execute(select(func.count()).select_from(table)).scalar_one()
            current = conn.execute(
                select(func.count()).select_from(table).where(table.c.superseded_by.is_(None))
            ).scalar_one()
            out.append(
                {
                    "schema": schema_id,
                    "reports": report_count,
                    "rows": stored,
                    "current_rows": current,
                }
            )
    return out
