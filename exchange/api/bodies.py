"""Reading pushed report bodies: size limits first, then JSON or CSV into a validated batch.

The size check runs on ``Content-Length`` and again while streaming, so an oversized body
gets 413 before it is read whole, whether or not the client declared its length. The whole
body must arrive within a deadline, so a client that trickles it in cannot hold a worker and
its buffer for ever; one that hangs up mid-body is logged once, at info.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
from dataclasses import replace
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.requests import ClientDisconnect, Request

from exchange.api import strict_json
from exchange.api.problems import (
    ClientDisconnectedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from exchange.formats import hxl_import
from schemas.errors import InvalidInputError
from schemas.model import ReportSchema
from schemas.validation import (
    Batch,
    ReportShapeError,
    ValidationContext,
    from_csv_rows,
    from_json_rows,
    from_plain_csv_lines,
)

log = logging.getLogger("exchange")

CSV_TYPES = ("text/csv", "application/csv")
#: Seconds for a whole body to arrive: 32 MiB at about 300 kB/s, a slow field link.
BODY_DEADLINE = 120.0
#: No schema has near this many fields; a wider header is refused before it is split.
MAX_COLUMNS = 256


async def read_body(request: Request, limit: int, *, deadline: float = BODY_DEADLINE) -> bytes:
    """The body, at most ``limit`` bytes, arrived within ``deadline`` seconds.

    Raises ``PayloadTooLargeError``, ``RequestTimeoutError`` or ``ClientDisconnectedError``.
    """
    try:
        async with asyncio.timeout(deadline):
            return await _read_body(request, limit)
    except TimeoutError:
        raise RequestTimeoutError.coded("body_deadline", seconds=f"{deadline:g}") from None
    except ClientDisconnect:
        log.info("client hung up mid-body on %s %s", request.method, request.url.path)
        raise ClientDisconnectedError.coded("client_disconnected") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError.coded(
            "body_too_large_declared", declared=int(declared), limit=limit
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError.coded("body_too_large", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


class JsonReport(BaseModel):
    """A JSON push: the rows, and optionally when the agency generated them (UTC-aware)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[Any]
    generated_at: AwareDatetime | None = None


def media_type(request: Request) -> str:
    """The body's media type, lower case; raises ``UnsupportedMediaTypeError`` on a charset
    other than UTF-8 (the only one this node reads)."""
    kind, *parameters = request.headers.get("content-type", "").split(";")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaTypeError.coded("charset_not_read", charset=repr(_cut(charset)))
    return kind.strip().lower()


def _cut(text: str, limit: int = 40) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def parse_report(
    body: bytes, content_type: str, schema: ReportSchema, ctx: ValidationContext
) -> Batch:
    """Turn a body into a validated batch, or raise an error that says what is wrong."""
    if content_type in CSV_TYPES:
        return _parse_csv(body, schema, ctx)
    if content_type == "application/json" or content_type.endswith("+json"):
        return _parse_json(body, schema, ctx)
    raise UnsupportedMediaTypeError.coded(
        "content_type_not_read", content_type=_cut(content_type) or "(none)"
    )


def _parse_csv(body: bytes, schema: ReportSchema, ctx: ValidationContext) -> Batch:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError.coded("csv_not_utf8", byte=exc.start) from None
    first_line = text[: text.find("\n")] if "\n" in text else text
    if first_line.count(",") >= MAX_COLUMNS:
        raise ReportShapeError.coded(
            "csv_too_many_columns",
            columns=first_line.count(",") + 1,
            schema=schema.id,
            fields=len(schema.fields),
        )
    if '"' not in text and "\r" not in text and not hxl_import.tagged(text):
        return _parse_plain_csv(text, schema, ctx)
    rows, lines = _csv_rows(text)
    if not rows:
        raise InvalidInputError.coded("csv_empty")
    tags = hxl_import.tag_row(rows)
    if tags is not None:
        columns = hxl_import.columns_for(schema, rows[tags])
        data = [columns.row(row) for row in rows[tags + 1 :]]
        return from_csv_rows(schema, columns.header, data, ctx, lines=lines[tags + 1 :])
    header = [h.strip() for h in rows[0]]
    return from_csv_rows(schema, header, rows[1:], ctx, lines=lines[1:])


def _csv_rows(text: str) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows, and the file line each starts on: what errors call its row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for row in reader:
            if row:  # blank lines carry nothing
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInputError.coded("csv_unreadable", reason=str(exc)) from None
    return rows, lines


def _parse_plain_csv(text: str, schema: ReportSchema, ctx: ValidationContext) -> Batch:
    """A CSV without quotes or carriage returns, split by column in C, not row by row.

    Without quotes a comma always separates fields, so when every line has the header's
    number of commas, every n-th value of the flattened file belongs to the same column.
    """
    split = text.split("\n")
    numbers: list[int] | None = None  # each data line's number in the file, when not 2, 3, ...
    if "\n\n" in text or text.startswith("\n"):  # blank lines carry nothing, but count
        numbers = [n for n, line in enumerate(split, 1) if line]
        split = [line for line in split if line]
    elif split and not split[-1]:
        split.pop()
    if not split:
        raise InvalidInputError.coded("csv_empty")
    header = [h.strip() for h in split[0].split(",")]
    data = split[1:]
    lines = numbers[1:] if numbers is not None else None
    return from_plain_csv_lines(schema, header, data, ctx, lines=lines)


def _parse_json(body: bytes, schema: ReportSchema, ctx: ValidationContext) -> Batch:
    try:
        document = strict_json.loads(body)
    except strict_json.StrictJsonError as exc:
        raise InvalidInputError(exc.message) from None
    if isinstance(document, list):
        document = {"rows": document}
    try:
        envelope = JsonReport.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInputError(f"{where}: {first['msg']}") from None
    batch = from_json_rows(schema, envelope.rows, ctx)
    generated = envelope.generated_at.astimezone(dt.UTC) if envelope.generated_at else None
    return replace(batch, generated_at=generated)
