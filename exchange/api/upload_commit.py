"""Committing an upload session: the whole file validated, then stored as one report.

Memory stays bounded by one part and one batch of rows, whatever the file's size. The
parts are read in order, one at a time, and cut into physical lines; every batch of
``BATCH_ROWS`` rows is validated as a push is (row errors carry the file's own row
numbers) and its normalized rows go to a scratch SQLite file on disk, private to this
commit. The checks that span the whole report (each cell stated once, no area stated
together with an area inside it) then run as SQL over that file, and the store reads its
batches back from it inside the storing transaction. So what is stored is exactly what was
validated, and a bad row anywhere stores nothing and is listed with every other error.

An uploaded report's ``content_sha256`` is the SHA-256 of the file as sent (the parts
concatenated), which an agency can compare with ``sha256sum`` of its file.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import marshal
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from operator import methodcaller
from pathlib import Path

from sqlalchemy import Connection

from exchange.api import json_rows, strict_json
from exchange.api.bodies import MAX_COLUMNS
from exchange.formats import hxl_import
from nodes import reports, upload_sessions
from nodes.database import reading
from nodes.node import Node
from nodes.tokens import TokenRecord
from nodes.upload_sessions import Session
from schemas.columns import ErrorLog
from schemas.errors import InvalidInputError
from schemas.model import ReportSchema
from schemas.validation import (
    Batch,
    JsonColumns,
    ReportShapeError,
    ReportValidationError,
    ValidationContext,
    from_csv_rows,
    from_json_columns,
    from_plain_csv_lines,
    json_columns,
)

#: Rows validated and staged at a time: about one part's worth of a typical report.
BATCH_ROWS = 50_000
#: A physical line longer than this is refused before it is split (no report row is near).
MAX_LINE = 1024 * 1024
#: What JSON counts as whitespace (RFC 8259): ``str.strip()`` would also drop U+00A0 and more.
JSON_SPACE = " \t\r\n"


def commit(
    node: Node,
    *,
    token: TokenRecord,
    public_id: str,
    parts: int | None,
    sha256: str | None,
    dry_run: bool,
    now: dt.datetime,
) -> reports.StoredReport:
    """Store the session's file as one report, or raise with every error and store nothing.

    ``parts`` and ``sha256``, when the client states them, must match what the node holds:
    a client that lost a part learns it here, not from a short report. Committing a
    committed session answers with its report again (``replayed``).
    """
    session = upload_sessions.get(node.engine, token=token, public_id=public_id, now=now)
    if session.state == "committed" and session.report_id is not None:
        stored = reports.get_for(node.engine, token=token, report_id=session.report_id)
        return replace(stored, replayed=True)
    schema = node.registry.get(session.schema_id)
    if not token.may_push(schema.id):
        reports.refuse_push(node.engine, token=token, schema_id=schema.id, now=now)
    _check_complete(session, parts)
    with tempfile.TemporaryDirectory(prefix="exchange-upload-") as scratch_dir:
        scratch = _Scratch(Path(scratch_dir) / "rows.sqlite3", schema)
        with closing(scratch):
            report = _survey(node, session, schema, scratch)
            if sha256 is not None and sha256.lower() != report.content_sha256:
                raise InvalidInputError.coded(
                    "upload_sha256_mismatch", actual=report.content_sha256, stated=sha256
                )
            return reports.store(
                node.engine,
                batch=report,
                token=token,
                idempotency_key=session.idempotency_key,
                now=now,
                dry_run=dry_run,
                then=lambda conn, stored: upload_sessions.mark_committed(conn, session, stored.id),
            )


def _check_complete(session: Session, parts: int | None) -> None:
    numbers = [p.number for p in session.parts]
    if not numbers:
        raise InvalidInputError.coded("upload_no_parts", upload=session.public_id)
    expected = parts if parts is not None else numbers[-1]
    missing = sorted(set(range(1, expected + 1)) - set(numbers))
    extra = [n for n in numbers if n > expected]
    if missing or extra:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        past = ", ".join(map(str, extra[:20]))
        upload = session.public_id
        if not extra:
            raise InvalidInputError.coded("upload_parts_missing", upload=upload, missing=shown)
        if not missing:
            raise InvalidInputError.coded(
                "upload_parts_extra", upload=upload, expected=expected, extra=past
            )
        raise InvalidInputError.coded(
            "upload_parts_missing_and_extra",
            upload=upload,
            missing=shown,
            expected=expected,
            extra=past,
        )


def _survey(
    node: Node, session: Session, schema: ReportSchema, scratch: _Scratch
) -> reports.Report:
    """Validate every row into ``scratch``; the report it makes, or every error raised."""
    ctx = node.validation
    digest = hashlib.sha256()

    def data() -> Iterator[bytes]:
        for part in session.parts:
            with reading(node.engine) as conn:
                chunk = upload_sessions.read_part(conn, session, part)
            digest.update(chunk)
            yield chunk

    blocks = _blocks(data())
    batches = (
        _csv_batches(blocks, schema, ctx)
        if session.media_type == "text/csv"
        else _ndjson_batches(blocks, schema, ctx)
    )
    errors = ErrorLog(ctx.max_errors)
    summarized = reports.summarized_columns(schema)
    seen: dict[str, set[object] | None] = {k: set() for k in summarized}
    rows = 0
    for attempt in batches:
        if isinstance(attempt, ReportValidationError):
            for e in attempt.errors:
                errors.add(e.row, e.field, e.value, e.code, **e.params)
            errors.total += attempt.total - len(attempt.errors)  # counted, not kept, there
            continue
        batch, numbers = attempt
        rows += batch.rows
        if not errors.total:  # once a row is bad nothing is stored: stop staging
            scratch.add(batch, numbers)
            for k in summarized:
                found = seen[k]
                if found is not None:
                    found.update(batch.columns[k])
                    if k != schema.area_key and len(found) > reports.MAX_DISTINCT:
                        seen[k] = None
    if rows == 0 and not errors.total:
        raise ReportShapeError.coded("upload_no_rows")
    if not errors.total:
        scratch.check_cells(ctx, errors)
    if errors.total:
        raise ReportValidationError(errors.items, errors.total, schema)
    return reports.Report(
        schema=schema,
        rows=rows,
        content_sha256=digest.hexdigest(),
        generated_at=session.generated_at,
        gazetteer=ctx.gazetteer,
        distinct={k: None if v is None else frozenset(v) for k, v in seen.items()},
        batches=scratch.batches,
    )


@dataclass(frozen=True)
class _Lines:
    """Consecutive physical lines of the file, each with its newline; ``first`` is the
    number of the first (the file's first line is 1)."""

    first: int
    texts: list[str]


def _blocks(chunks: Iterable[bytes]) -> Iterator[_Lines]:
    """The file's lines, a part's worth at a time, decoded at once.

    A part may end inside a line or a character, so its tail waits for the next part.
    Only ``\n`` ends a line, as in ``csv``; a byte order mark before the first is dropped.
    """
    tail = b""
    number = 1
    for chunk in chunks:
        buffer = tail + chunk
        end = buffer.rfind(b"\n") + 1
        if end:
            texts = _decode(buffer[:end], number, first=number == 1).split("\n")
            texts.pop()  # after the last newline: nothing
            yield _Lines(number, [t + "\n" for t in texts])
            number += len(texts)
        tail = buffer[end:]
        if len(tail) > MAX_LINE:
            raise InvalidInputError.coded("upload_line_too_long", line=number, limit=MAX_LINE)
    if tail:
        yield _Lines(number, [_decode(tail, number, first=number == 1)])


def _decode(raw: bytes, number: int, *, first: bool) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise InvalidInputError.coded(
            "upload_line_not_utf8",
            line=number + raw.count(b"\n", 0, exc.start),
            byte=exc.start - line_start + 1,
        ) from None
    return text.removeprefix("\ufeff") if first else text


Attempt = tuple[Batch, list[int]] | ReportValidationError


def _csv_batches(
    blocks: Iterator[_Lines], schema: ReportSchema, ctx: ValidationContext
) -> Iterator[Attempt]:
    """Batches of about ``BATCH_ROWS`` CSV lines, cut only between rows.

    Quotes come in pairs in CSV (a quoted value, or ``""`` inside one), so lines that hold
    an even number of them end on a row's end: a cut there never splits a quoted value. A
    value left open for ``BATCH_ROWS`` more lines is refused, not read on for ever.
    """
    header: list[str] | None = None
    pending: list[str] = []
    first = 1  # the number of pending[0]
    for block in blocks:
        texts = block.texts
        if header is None:
            start = next((i for i, t in enumerate(texts) if t.strip()), None)
            if start is None:
                continue
            _refuse_hxl(texts[start:], block.first + start)
            header = _header(texts[start], block.first + start, schema)
            texts = texts[start + 1 :]
            first = block.first + start + 1
        pending.extend(texts)
        while len(pending) >= BATCH_ROWS and (cut := _row_end(pending, BATCH_ROWS, first)):
            yield _csv_batch(first, pending[:cut], header, schema, ctx)
            del pending[:cut]
            first += cut
    if header is None:
        raise InvalidInputError.coded("csv_empty")
    if pending:
        yield _csv_batch(first, pending, header, schema, ctx)


def _row_end(lines: list[str], wanted: int, first: int) -> int | None:
    """The first cut at or after ``wanted`` lines that falls between rows, or None when
    ``lines`` end inside a quoted value (the next part closes it)."""
    quotes = "".join(lines[:wanted]).count('"')
    cut = wanted
    while quotes % 2:
        if cut >= 2 * wanted:
            raise InvalidInputError.coded(
                "upload_csv_unreadable", line=first, reason="a quoted value is not closed"
            )
        if cut == len(lines):
            return None
        quotes += lines[cut].count('"')
        cut += 1
    return cut


def _refuse_hxl(texts: list[str], first: int) -> None:
    """An HXL-tagged file goes in one push: its columns are chosen by the hashtag row, which
    ``exchange.api.bodies`` reads and an upload session's batches do not."""
    tags = hxl_import.head_tag_row(texts)
    if tags is not None:
        raise ReportShapeError.coded("upload_hxl", line=first + tags)


def _header(text: str, number: int, schema: ReportSchema) -> list[str]:
    if text.count(",") >= MAX_COLUMNS:
        raise ReportShapeError.coded(
            "csv_too_many_columns",
            columns=text.count(",") + 1,
            schema=schema.id,
            fields=len(schema.fields),
        )
    try:
        return [h.strip() for h in next(csv.reader([text]))]
    except csv.Error as exc:
        raise InvalidInputError.coded(
            "upload_csv_unreadable", line=number, reason=str(exc)
        ) from None


def _csv_batch(
    first: int, lines: list[str], header: list[str], schema: ReportSchema, ctx: ValidationContext
) -> Attempt:
    """One batch validated column by column; lines without quotes are split in C."""
    text = "".join(lines)
    if '"' in text or "\r" in text:
        return _quoted_csv_batch(first, lines, header, schema, ctx)
    values = text.split("\n")
    if not values[-1]:
        values.pop()  # after the last newline
    numbers = list(range(first, first + len(values)))
    if "" in values:  # blank lines carry nothing, but count
        kept = [(n, v) for n, v in zip(numbers, values, strict=True) if v]
        numbers, values = [n for n, _v in kept], [v for _n, v in kept]
    if not values:
        return _no_rows(schema), numbers
    check = partial(
        from_plain_csv_lines, schema, header, values, ctx, lines=numbers, check_cells=False
    )
    return _validated(check, numbers)


def _quoted_csv_batch(
    first: int, lines: list[str], header: list[str], schema: ReportSchema, ctx: ValidationContext
) -> Attempt:
    reader = csv.reader(lines)
    rows: list[list[str]] = []
    starts: list[int] = []
    start = first
    try:
        for row in reader:
            if row:
                rows.append(row)
                starts.append(start)
            start = first + reader.line_num
    except csv.Error as exc:
        raise InvalidInputError.coded(
            "upload_csv_unreadable", line=first + reader.line_num, reason=str(exc)
        ) from None
    if not rows:
        return _no_rows(schema), starts
    check = partial(from_csv_rows, schema, header, rows, ctx, lines=starts, check_cells=False)
    return _validated(check, starts)


def _no_rows(schema: ReportSchema) -> Batch:
    return Batch(schema=schema, columns={c: [] for c in schema.stored_columns}, rows=0)


def _ndjson_batches(
    blocks: Iterator[_Lines], schema: ReportSchema, ctx: ValidationContext
) -> Iterator[Attempt]:
    """Batches of JSON Lines rows: one object per line, the line number its row number."""
    pending = _PendingColumns(schema)
    for block in blocks:
        numbered: Sequence[int] = range(block.first, block.first + len(block.texts))
        decoded = json_rows.columns_of_lines(schema, block.texts)
        if decoded is None:  # a blank line, or one the strict decoder must name
            lines = list(map(methodcaller("strip", JSON_SPACE), block.texts))
            numbered = [n for n, line in zip(numbered, lines, strict=True) if line]
            lines = list(filter(None, lines))
            decoded = json_rows.columns_of_lines(schema, lines) or json_columns(
                schema, list(map(_ndjson_line, lines, numbered))
            )
        pending.add(decoded, numbered)
        while pending.rows >= BATCH_ROWS:
            yield _json_batch(*pending.take(BATCH_ROWS), schema, ctx)
    if pending.rows:
        yield _json_batch(*pending.take(pending.rows), schema, ctx)


class _PendingColumns:
    """Decoded rows waiting for a whole batch: a part need not hold a batch's worth."""

    def __init__(self, schema: ReportSchema) -> None:
        self.columns: dict[str, list[object]] = {f.name: [] for f in schema.fields}
        self.names: set[str] = set()
        self.numbers: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.numbers)

    def add(self, decoded: JsonColumns, numbers: Sequence[int]) -> None:
        for name, column in decoded.columns.items():
            self.columns[name].extend(column)
        self.names.update(decoded.names)
        self.numbers.extend(numbers)

    def take(self, n: int) -> tuple[JsonColumns, list[int]]:
        """The first ``n`` rows. Their names are the fields given in any row pending, so a
        field that only later rows give is a null in these (refused row by row if required),
        not a column missing from the file."""
        taken = JsonColumns(frozenset(self.names), {k: v[:n] for k, v in self.columns.items()}, n)
        numbers = self.numbers[:n]
        for column in self.columns.values():
            del column[:n]
        del self.numbers[:n]
        if not self.numbers:
            self.names.clear()
        return taken, numbers


def _ndjson_line(text: str, number: int) -> dict[str, object]:
    """One line decoded alone: the slow path, which names the first line at fault."""
    try:
        row = strict_json.loads(text.encode())
    except strict_json.StrictJsonError as exc:
        raise InvalidInputError.coded(
            "upload_ndjson_not_json", line=number, reason=str(exc)
        ) from None
    if not isinstance(row, dict):
        raise ReportShapeError.coded("upload_ndjson_not_object", line=number)
    return row


def _json_batch(
    decoded: JsonColumns, numbers: list[int], schema: ReportSchema, ctx: ValidationContext
) -> Attempt:
    check = partial(from_json_columns, schema, decoded, ctx, lines=numbers, check_cells=False)
    return _validated(check, numbers)


def _validated(validate: Callable[[], Batch], numbers: list[int]) -> Attempt:
    try:
        return validate(), numbers
    except ReportValidationError as exc:
        return exc


class _Scratch:
    """The validated rows of one commit, in a SQLite file private to it.

    Each batch is kept whole, serialized with ``marshal`` (lists of text, integers and None,
    written and read back by this process only), so reading it back costs little. The checks
    across batches need the cell keys: each row's key goes to a table of its own as one
    integer, its hash, with the row's file line, in row order. Equal keys
    have equal hashes, so a unique index over them that builds finds no cell stated twice;
    only when it fails (a repeat, or two keys of one hash) are the keys themselves staged
    from the batches, and SQL names every repeated row, as it does for nested areas.
    """

    def __init__(self, path: Path, schema: ReportSchema) -> None:
        self.schema = schema
        self.columns = schema.stored_columns
        self.areas: set[object] = set()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("CREATE TABLE batches (rows INTEGER NOT NULL, columns BLOB NOT NULL)")
        self.db.execute("CREATE TABLE hashed (line INTEGER NOT NULL, cell INTEGER NOT NULL)")
        self._keyed = False

    def add(self, batch: Batch, numbers: Sequence[int]) -> None:
        blob = marshal.dumps([batch.columns[c] for c in self.columns])
        cells = map(hash, zip(*(batch.columns[k] for k in self.schema.cell_key), strict=True))
        if self.schema.area_key is not None:
            self.areas.update(batch.columns[self.schema.area_key])
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO batches VALUES (?, ?)", (batch.rows, blob))
        self.db.executemany("INSERT INTO hashed VALUES (?, ?)", zip(numbers, cells, strict=True))
        self.db.execute("COMMIT")

    def batches(self, _conn: Connection) -> Iterator[Batch]:
        for rows, blob in self.db.execute("SELECT rows, columns FROM batches ORDER BY rowid"):
            values = marshal.loads(blob)  # noqa: S302 (bytes this commit wrote to its own file)
            columns = dict(zip(self.columns, values, strict=True))
            yield Batch(schema=self.schema, columns=columns, rows=rows)

    def _stage_keys(self) -> None:
        """The table ``staged``: each row's line and cell key, for the queries that name rows."""
        if self._keyed:
            return
        key = self.schema.cell_key
        names = ", ".join(f'"{k}"' for k in key)
        self.db.execute(f"CREATE TABLE staged (line INTEGER NOT NULL, {names})")
        marks = ", ".join("?" for _ in key)
        insert = f"INSERT INTO staged VALUES (?, {marks})"  # noqa: S608 (names from schema)
        at = [self.columns.index(k) for k in key]
        lines = self.db.execute("SELECT line FROM hashed ORDER BY rowid")
        for rows, blob in self.db.execute("SELECT rows, columns FROM batches ORDER BY rowid"):
            values = marshal.loads(blob)  # noqa: S302 (bytes this commit wrote to its own file)
            numbers = [line for (line,) in lines.fetchmany(rows)]
            self.db.executemany(insert, zip(numbers, *(values[i] for i in at), strict=True))
        self._keyed = True

    def check_cells(self, ctx: ValidationContext, errors: ErrorLog) -> None:
        """Each cell once, and no area with an area inside it for the same rest of the key."""
        self._duplicates(errors)
        if not errors.total:
            self._nested(ctx, errors)

    def _duplicates(self, errors: ErrorLog) -> None:
        """A unique index over the hashes builds in C and fails on the first repeat; only
        then are the keys staged and the slower query run that names every repeated row and
        where it came first (none, if two keys only shared a hash)."""
        try:
            self.db.execute("CREATE UNIQUE INDEX cells ON hashed (cell)")
            return
        except sqlite3.IntegrityError:
            pass
        self._stage_keys()
        key = self.schema.cell_key
        names = ", ".join(f'"{k}"' for k in key)
        query = (
            f"SELECT line, first, {names} FROM (SELECT line, {names}, "  # noqa: S608
            f"MIN(line) OVER (PARTITION BY {names}) AS first FROM staged) "
            "WHERE line <> first ORDER BY line"
        )
        for line, first, *values in self.db.execute(query):
            errors.add(
                line, "+".join(key), "/".join(map(str, values)), "duplicate_cell", first_row=first
            )

    def _nested(self, ctx: ValidationContext, errors: ErrorLog) -> None:
        area = self.schema.area_key
        if area is None:
            return
        ancestry = {c: ctx.gazetteer.ancestors(str(c)) for c in self.areas}
        containing = self.areas.intersection(a for found in ancestry.values() for a in found)
        if not containing:
            return
        self._stage_keys()
        self.db.execute("CREATE TEMPORARY TABLE ancestry (code, ancestor, depth)")
        self.db.executemany(
            "INSERT INTO ancestry VALUES (?, ?, ?)",
            (
                (code, ancestor, depth)
                for code, found in ancestry.items()
                for depth, ancestor in enumerate(found)
                if ancestor in containing
            ),
        )
        rest = [k for k in self.schema.cell_key if k != area]
        same = "".join(f' AND o."{k}" IS i."{k}"' for k in rest)
        query = (
            f'SELECT i.line, i."{area}", a.ancestor, o.line FROM staged i '  # noqa: S608
            f'JOIN ancestry a ON a.code = i."{area}" '
            f'JOIN staged o ON o."{area}" = a.ancestor{same} ORDER BY i.line, a.depth'
        )
        reported: set[int] = set()
        for line, code, ancestor, other in self.db.execute(query):
            if line not in reported:
                reported.add(line)
                errors.add(
                    line,
                    area,
                    code,
                    "nested_area",
                    ancestor=ancestor,
                    other_row=other,
                    fields=tuple(rest),
                )

    def close(self) -> None:
        self.db.close()
