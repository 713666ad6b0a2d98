"""Reading pushed report bodies: size limits first, then JSON or CSV into a validated batch.

The size check runs on ``Content-Length`` and again while streaming, so an oversized body
gets 413 before it is read whole, whether or not the client declared its length.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import replace
from itertools import repeat
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from exchange.problems import PayloadTooLargeError, UnsupportedMediaTypeError
from schemas.errors import InvalidInputError
from schemas.model import ReportSchema
from schemas.validation import (
    Batch,
    ValidationContext,
    from_csv_rows,
    from_json_rows,
    from_text_columns,
)

CSV_TYPES = ("text/csv", "application/csv")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"the body is {declared} bytes; this node accepts at most {limit} bytes per push"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"the body exceeds {limit} bytes; split the report into smaller pushes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class JsonReport(BaseModel):
    """A JSON push: the rows, and optionally when the agency generated them (UTC-aware)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[Any]
    generated_at: AwareDatetime | None = None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_report(
    body: bytes, content_type: str, schema: ReportSchema, ctx: ValidationContext
) -> Batch:
    """Turn a body into a validated batch, or raise an error that says what is wrong."""
    if content_type in CSV_TYPES:
        return _parse_csv(body, schema, ctx)
    if content_type == "application/json" or content_type.endswith("+json"):
        return _parse_json(body, schema, ctx)
    raise UnsupportedMediaTypeError(
        f"Content-Type '{content_type or '(none)'}' is not read here; send application/json or text/csv"
    )


def _parse_csv(body: bytes, schema: ReportSchema, ctx: ValidationContext) -> Batch:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the CSV is not UTF-8 (byte {exc.start} is invalid)") from None
    if '"' not in text and "\r" not in text:
        return _parse_plain_csv(text, schema, ctx)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InvalidInputError(f"the CSV cannot be read: {exc}") from None
    rows = [r for r in rows if r]  # blank lines carry nothing
    if not rows:
        raise InvalidInputError("the CSV is empty; the first row names the fields")
    header = [h.strip() for h in rows[0]]
    return from_csv_rows(schema, header, rows[1:], ctx)


def _parse_plain_csv(text: str, schema: ReportSchema, ctx: ValidationContext) -> Batch:
    """A CSV without quotes or carriage returns, split by column in C, not row by row.

    Without quotes a comma always separates fields, so when every line has the header's
    number of commas, every n-th value of the flattened file belongs to the same column.
    """
    lines = [line for line in text.split("\n") if line]
    if not lines:
        raise InvalidInputError("the CSV is empty; the first row names the fields")
    header = [h.strip() for h in lines[0].split(",")]
    data = lines[1:]
    width = len(header)
    if data and set(map(str.count, data, repeat(","))) != {width - 1}:
        return from_csv_rows(
            schema, header, [line.split(",") for line in data], ctx
        )  # lists bad rows
    flat = ",".join(data).split(",") if data else []
    columns = [flat[i::width] for i in range(width)]
    return from_text_columns(schema, header, columns, len(data), ctx)


def _parse_json(body: bytes, schema: ReportSchema, ctx: ValidationContext) -> Batch:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the body is not valid JSON: {exc}") from None
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
