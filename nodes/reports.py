"""Storing pushed reports: all or nothing, idempotent, durable before acknowledged.

A correction is a new report; older rows of the same cells get ``superseded_by`` and stay
readable, so the history is never lost and queries read ``superseded_by IS NULL``.

"The same cells" means the cells that count the same people: the same week and stratum and
an area that is the same, contains or lies inside the new row's area. So a later report
may change the level an area is reported at (districts replace their province's row, or a
province row replaces its districts'), and the current rows never overlap: every person is
counted once in every sum (``schemas.validation`` refuses overlaps within one report).

Concurrency: two corrections of one cell must not both stay current, so on PostgreSQL the
supersede step runs under advisory locks that any two pushes stating overlapping cells share
(`_lock_cells`; SQLite's writers are serialized by ``BEGIN IMMEDIATE`` anyway). The locks
are held only for what needs them: the overlapping areas, the COPY of the rows into a
temporary staging table and the idempotency lookup come first; under the locks a few
server-side statements number the report, move its staged rows into the cell table,
supersede older rows and append the audit entry (benchmarks/concurrency.py). The report id
is taken under the locks, so the ids of any two reports that overlap follow lock order and
"older" (``report_id < id``) means "committed earlier".
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any, NoReturn

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from nodes import notices
from nodes.access import ForbiddenError
from nodes.audit.log import append
from nodes.audit.vocabulary import Outcome
from nodes.bulk import insert_rows
from nodes.database import reading, writing
from nodes.tables import cell_tables, reports
from nodes.tokens import TokenRecord
from schemas.errors import ConflictError, NotFoundError
from schemas.gazetteer import Gazetteer
from schemas.model import ReportSchema
from schemas.validation import Batch

#: A key column with more distinct values than this is not listed in a probe or lock set.
MAX_DISTINCT = 30_000  # below SQLite's 32,766 bound parameters


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


@dataclass(frozen=True)
class Report:
    """A validated report as ``store`` takes it: what it states, and its rows in batches.

    A push is one batch in memory. A committed upload session is many, read back in turn
    inside the storing transaction, so the file is never in memory whole; what the store
    needs before the rows (distinct key values to lock and probe, areas, the count) is
    gathered while it was validated. ``distinct[k]`` is None when key column ``k`` had more
    than ``MAX_DISTINCT`` values (then the store locks the schema and skips the probe); the
    areas are always listed (there are no more than the gazetteer holds).
    """

    schema: ReportSchema
    rows: int
    content_sha256: str
    generated_at: dt.datetime | None
    gazetteer: Gazetteer | None
    distinct: dict[str, frozenset[object] | None]
    batches: Callable[[Connection], Iterable[Batch]]

    @classmethod
    def of(cls, batch: Batch) -> Report:
        return cls(
            schema=batch.schema,
            rows=batch.rows,
            content_sha256=batch.content_sha256(),
            generated_at=batch.generated_at,
            gazetteer=batch.gazetteer,
            distinct={
                k: distinct(batch.schema, k, batch.columns[k])
                for k in summarized_columns(batch.schema)
            },
            batches=lambda _conn: (batch,),
        )


def summarized_columns(schema: ReportSchema) -> tuple[str, ...]:
    """The key columns whose distinct values ``Report.distinct`` holds: the area, and the
    first two of the cell key (the probe's), which include the lock's column."""
    wanted = [*schema.cell_key[:2], *([schema.area_key] if schema.area_key else [])]
    lock = next((k for k in schema.cell_key if k != schema.area_key), None)
    if lock is not None:
        wanted.append(lock)
    return tuple(dict.fromkeys(wanted))


def distinct(
    schema: ReportSchema, column: str, values: Iterable[object]
) -> frozenset[object] | None:
    """The distinct values of a summarized column, or None past ``MAX_DISTINCT`` (not areas)."""
    found = frozenset(values)
    return found if column == schema.area_key or len(found) <= MAX_DISTINCT else None


class IdempotencyConflictError(ConflictError):
    """An idempotency key was reused for a different report."""


def store(
    engine: Engine,
    *,
    batch: Batch | Report,
    token: TokenRecord,
    idempotency_key: str | None,
    now: dt.datetime,
    dry_run: bool = False,
    then: Callable[[Connection, StoredReport], None] | None = None,
) -> StoredReport:
    """Store a validated report in one transaction; return only after it is committed.

    ``then`` runs last in the same transaction, with the stored report (an upload session
    marks itself committed there, so the two happen together or not at all).
    """
    report = batch if isinstance(batch, Report) else Report.of(batch)
    if not token.may_push(report.schema.id):
        refuse_push(engine, token=token, schema_id=report.schema.id, now=now)
    content = report.content_sha256
    pairs = _overlapping_pairs(report)  # pure Python: before any transaction or lock
    for _attempt in range(2):
        try:
            with writing(engine, dry_run=dry_run) as conn:
                earlier = _find_by_key(conn, token, idempotency_key)
                if earlier is not None:
                    replayed = _replay(earlier, report.schema.id, content)
                    _log_push(conn, replayed, token=token, now=now)
                    return replayed
                stored = _insert(
                    conn,
                    report=report,
                    token=token,
                    key=idempotency_key,
                    pairs=pairs,
                    now=now,
                )
                if then is not None:
                    then(conn, stored)
                return stored
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
    report: Report,
    token: TokenRecord,
    key: str | None,
    pairs: list[tuple[str, str]] | None,
    now: dt.datetime,
) -> StoredReport:
    schema = report.schema
    table = cell_tables[schema.id]
    columns = schema.stored_columns
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        # Unlocked: the rows go to a staging table private to this connection, and the pairs
        # of overlapping areas to theirs. Then serialize the writers of these cells, so that
        # two corrections of a cell cannot both stay current, from the report's id to commit.
        staged = _stage(conn, table, columns, report.batches(conn))
        if pairs is not None:
            _load_pairs(conn, pairs)
        _lock_cells(conn, table, report)
    report_id = conn.execute(
        reports.insert()
        .values(
            schema_id=schema.id,
            token_id=token.id,
            received_at=now,
            generated_at=report.generated_at,
            idempotency_key=key,
            content_sha256=report.content_sha256,
            row_count=report.rows,
            superseded_rows=0,
        )
        .returning(reports.c.id)
    ).scalar_one()
    if postgresql:
        names = ", ".join(columns)
        conn.execute(
            text(
                f"INSERT INTO {table.name} (report_id, {names}) "  # noqa: S608 (names from schema)
                f"SELECT :report_id, {names} FROM {staged.name}"
            ),
            {"report_id": report_id},
        )
    else:
        for batch in report.batches(conn):
            rows = zip(repeat(report_id), *(batch.columns[c] for c in columns), strict=False)
            insert_rows(conn, table, ("report_id", *columns), rows)
    superseded = _supersede(
        conn, table, report_id, report, pairs, pairs_loaded=postgresql and pairs is not None
    )
    if superseded:
        conn.execute(
            update(reports).where(reports.c.id == report_id).values(superseded_rows=superseded)
        )
    stored = StoredReport(
        id=report_id,
        schema_id=schema.id,
        token_name=token.name,
        received_at=now,
        idempotency_key=key,
        content_sha256=report.content_sha256,
        rows=report.rows,
        superseded_rows=superseded,
    )
    # Partners whose releases the correction restated (queries before the audit head lock).
    pending = notices.affected(conn, schema=schema, report_id=report_id, superseded=superseded)
    # Last: the head lock is held to commit, so only the notices' few inserts follow.
    _log_push(conn, stored, token=token, now=now)
    notices.record(conn, pending, report_id=report_id, now=now)
    return stored


def _log_push(
    conn: Connection, stored: StoredReport, *, token: TokenRecord, now: dt.datetime
) -> None:
    """The push's audit entry: schema, report id, row counts and content hash, never content."""
    outcome: Outcome = "replayed" if stored.replayed else "allowed"
    reason = (
        f"idempotent replay of report {stored.id}; nothing stored"
        if stored.replayed
        else f"{stored.rows} rows stored, {stored.superseded_rows} older rows superseded"
    )
    append(
        conn,
        actor=f"token:{token.name}",
        role=token.role,
        action="report.push",
        resource=f"report:{stored.id}",
        outcome=outcome,
        reason=reason,
        schema=stored.schema_id,
        request_digest=f"sha-256:{stored.content_sha256}",
        now=now,
    )


def refuse_push(
    engine: Engine, *, token: TokenRecord, schema_id: str, now: dt.datetime
) -> NoReturn:
    """Log a push outside the token's scope (in its own transaction), then refuse it.

    Raises ForbiddenError, always.
    """
    allowed = ", ".join(token.schemas) or "nothing"
    message = f"token '{token.name}' may not push {schema_id}; it may push {allowed}"
    with writing(engine) as conn:
        append(
            conn,
            actor=f"token:{token.name}",
            role=token.role,
            action="report.push",
            resource=f"schema:{schema_id}",
            outcome="denied",
            reason=message,
            schema=schema_id,
            now=now,
        )
    raise ForbiddenError(message)


def _lock_cells(conn: Connection, table: Table, report: Report) -> None:
    """Take the advisory locks that every push stating one of these cells takes (PostgreSQL).

    Overlapping cells have equal values in every key column but the area, so the values of
    the first such column (the week, for weekly counts), hashed into buckets per schema,
    name the locks: pushes of different weeks proceed side by side. Buckets are locked in
    order (no deadlocks), under the schema's lock held shared; a report touching more than
    ``_MAX_BUCKET_LOCKS`` buckets, or a schema whose key is only an area, takes the schema's
    lock exclusively instead. The two-key and one-key advisory lock spaces do not overlap.
    """
    schema_lock = zlib.crc32(table.name.encode())
    column = next((k for k in report.schema.cell_key if k != report.schema.area_key), None)
    values = report.distinct[column] if column is not None else None
    buckets = sorted({zlib.crc32(str(v).encode()) % _BUCKETS for v in values or ()})
    if not buckets or len(buckets) > _MAX_BUCKET_LOCKS:
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": schema_lock})
        return
    conn.execute(text("SELECT pg_advisory_xact_lock_shared(:id)"), {"id": schema_lock})
    namespace = schema_lock - 2**32 if schema_lock >= 2**31 else schema_lock  # as an int4
    for bucket in buckets:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, :bucket)"),
            {"namespace": namespace, "bucket": bucket},
        )


_BUCKETS = 4096
_MAX_BUCKET_LOCKS = 32


def _overlapping_pairs(report: Report) -> list[tuple[str, str]] | None:
    """Pairs (area in the report, area it overlaps), or None for a schema without areas."""
    area = report.schema.area_key
    if area is None:
        return None
    if report.gazetteer is None:
        raise ValueError(f"{report.schema.id}: a report with areas must name its gazetteer")
    areas = report.distinct[area]
    assert areas is not None, "areas are always listed"
    return report.gazetteer.overlapping(str(a) for a in areas)


def _stage(
    conn: Connection, table: Table, columns: tuple[str, ...], batches: Iterable[Batch]
) -> Table:
    """COPY the report's rows into a temporary table private to the connection (PostgreSQL)."""
    staged = Table(f"staged_{table.name}", MetaData())
    names = ", ".join(columns)
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged.name} AS "  # noqa: S608 (names from schema)
        f"SELECT {names} FROM {table.name} WITH NO DATA"
    )
    driver.execute(f"DELETE FROM {staged.name}")  # noqa: S608 (rows of an earlier commit)
    for batch in batches:
        insert_rows(conn, staged, columns, zip(*(batch.columns[c] for c in columns), strict=False))
    return staged


def _supersede(
    conn: Connection,
    table: Any,
    report_id: int,
    report: Report,
    pairs: list[tuple[str, str]] | None,
    *,
    pairs_loaded: bool,
) -> int:
    """Mark older current rows that count the same people as this report's rows superseded.

    Most pushes state new cells only. A probe with the distinct values of the first two
    key columns (a few hundred areas, with the areas that contain them or lie inside them,
    and weeks; not one per row) finds that out with a handful of index lookups and skips
    the row-by-row join. The probe may over-match; then the join decides, set-based: the
    report's areas and the areas they overlap go into a temporary table of pairs, and one
    UPDATE joins new rows, pairs and older current rows on the rest of the key.
    """
    cell_key = report.schema.cell_key
    area = report.schema.area_key
    pairs = pairs or []
    prefix = cell_key[:2]
    known = [{b for _a, b in pairs} if k == area else report.distinct[k] for k in prefix]
    distinct = [sorted(values, key=str) for values in known if values is not None]
    if len(distinct) == len(prefix) and sum(map(len, distinct)) < _MAX_PROBE_PARAMETERS:
        probe = select(table.c.id).where(
            table.c.report_id < report_id, table.c.superseded_by.is_(None)
        )
        for key, values in zip(prefix, distinct, strict=True):
            probe = probe.where(table.c[key].in_(values))
        if conn.execute(probe.limit(1)).first() is None:
            return 0
    new = table.alias("new")
    old = table.alias("old")
    same = [old.c[k] == new.c[k] for k in cell_key if k != area]
    older = select(old.c.id)
    if area is None:
        older = older.join(new, and_(*same))
    else:
        if not pairs_loaded:
            _load_pairs(conn, pairs)
        older = older.join(_PAIRS, _PAIRS.c.other == old.c[area]).join(
            new, and_(new.c[area] == _PAIRS.c.area, *same)
        )
    older_current = older.where(
        new.c.report_id == report_id, old.c.report_id < report_id, old.c.superseded_by.is_(None)
    )
    result = conn.execute(
        update(table).where(table.c.id.in_(older_current)).values(superseded_by=report_id)
    )
    return int(result.rowcount)


# Pairs of overlapping areas for one push: a temporary table, private to the connection.
_PAIRS = Table(
    "overlapping_areas",
    MetaData(),
    Column("area", String(32), primary_key=True),
    Column("other", String(32), primary_key=True),
)


def _load_pairs(conn: Connection, pairs: list[tuple[str, str]]) -> None:
    conn.execute(
        text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS overlapping_areas "
            "(area VARCHAR(32) NOT NULL, other VARCHAR(32) NOT NULL, PRIMARY KEY (area, other))"
        )
    )
    conn.execute(_PAIRS.delete())
    insert_rows(conn, _PAIRS, ("area", "other"), pairs)


_MAX_PROBE_PARAMETERS = 30_000  # below SQLite's 32,766 bound parameters


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
    """Per schema: reports, stored rows and current rows. Operator's view, no content.

    One grouped query over ``reports``, never over the stored rows: each report keeps its
    ``row_count`` and how many older rows it superseded (each row is superseded at most
    once), so the current rows are the stored ones less the superseded ones.
    """
    with reading(engine) as conn:
        grouped = {
            schema_id: (int(n), int(rows), int(superseded))
            for schema_id, n, rows, superseded in conn.execute(
                select(
                    reports.c.schema_id,
                    func.count(),
                    func.coalesce(func.sum(reports.c.row_count), 0),
                    func.coalesce(func.sum(reports.c.superseded_rows), 0),
                ).group_by(reports.c.schema_id)
            )
        }
    out: list[dict[str, object]] = []
    for schema_id in sorted(cell_tables):
        n, rows, superseded = grouped.get(schema_id, (0, 0, 0))
        out.append(
            {"schema": schema_id, "reports": n, "rows": rows, "current_rows": rows - superseded}
        )
    return out


def current_cells(engine: Engine, *, batch: Batch) -> dict[tuple[object, ...], tuple[object, ...]]:
    """The current measures of the batch's cells that the node holds, by exact cell key.

    For imports that count what is new, changed or already current (DHIS2's imported,
    updated and ignored values) and store only what changes: a few index probes by the
    batch's distinct areas and first key values, then one read of the matching current rows.
    """
    schema = batch.schema
    table = cell_tables[schema.id]
    key = schema.cell_key
    measures = [m.name for m in schema.measures]
    first = key[0]
    second = key[1] if len(key) > 1 else None
    firsts = sorted(set(batch.columns[first]), key=str)
    seconds = sorted(set(batch.columns[second]), key=str) if second else []
    wanted: set[tuple[object, ...]] | None = None  # built only if the node holds any
    found: dict[tuple[object, ...], tuple[object, ...]] = {}
    step = 500
    with reading(engine) as conn:
        for i in range(0, len(firsts), step):
            query = select(*(table.c[k] for k in key), *(table.c[m] for m in measures)).where(
                table.c.superseded_by.is_(None), table.c[first].in_(firsts[i : i + step])
            )
            if second is not None and len(seconds) <= step:
                query = query.where(table.c[second].in_(seconds))
            for row in conn.execute(query):
                if wanted is None:
                    wanted = set(zip(*(batch.columns[k] for k in key), strict=True))
                cell = tuple(row[: len(key)])
                if cell in wanted:
                    found[cell] = tuple(row[len(key) :])
    return found


def record_unchanged(
    engine: Engine,
    *,
    token: TokenRecord,
    schema_id: str,
    content_sha256: str,
    values: int,
    now: dt.datetime,
) -> None:
    """Audit an import whose every value was already current: nothing stored, but pushed."""
    if not token.may_push(schema_id):
        refuse_push(engine, token=token, schema_id=schema_id, now=now)
    with writing(engine) as conn:
        append(
            conn,
            actor=f"token:{token.name}",
            role=token.role,
            action="report.push",
            resource=f"schema:{schema_id}",
            outcome="replayed",
            reason=f"all {values} values already current; nothing stored",
            schema=schema_id,
            request_digest=f"sha-256:{content_sha256}",
            now=now,
        )
