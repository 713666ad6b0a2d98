"""The agency API: push reports, list and read back one's own."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from exchange.api.bodies import media_type, parse_report, read_body
from exchange.api.dependencies import CurrentAgency, NodeDep
from exchange.api.problems import documented
from nodes import reports
from nodes.node import Node
from nodes.tokens import TokenRecord
from schemas.columns import MAX_TEXT
from schemas.standard import STANDARD_SCHEMAS

router = APIRouter(prefix="/v1/reports", tags=["agency"])

SchemaId = Annotated[
    str, Path(description="A schema id, name@version", examples=["weekly_epi@1"], max_length=64)
]


class Receipt(BaseModel):
    """What the node stored (or, for a dry run, would store)."""

    report_id: int | None
    schema_id: str
    received_at: dt.datetime
    rows: int
    superseded_rows: int
    content_sha256: str
    idempotency_key: str | None
    dry_run: bool = False
    replayed: bool = False


class ReportList(BaseModel):
    reports: list[Receipt]
    next_before: int | None


class ReportDetail(Receipt):
    stored_rows: list[dict[str, Any]]
    offset: int


def receipt_of(stored: reports.StoredReport, *, dry_run: bool = False) -> Receipt:
    return Receipt(
        report_id=None if dry_run else stored.id,
        schema_id=stored.schema_id,
        received_at=stored.received_at,
        rows=stored.rows,
        superseded_rows=stored.superseded_rows,
        content_sha256=stored.content_sha256,
        idempotency_key=stored.idempotency_key,
        dry_run=dry_run,
        replayed=stored.replayed,
    )


def _push_body() -> dict[str, Any]:
    """The push body as strictly as one document can say it for every standard schema.

    A row's exact fields depend on the schema named in the path (``GET /v1/schemas/{id}``);
    what holds for all of them is stated here, so a body this document refuses, validation
    refuses too: field names from the standard schemas, values null, a non-negative integer
    up to the largest measure maximum, or text of at most ``MAX_TEXT`` characters without
    control characters.
    """
    names = sorted({f.name for s in STANDARD_SCHEMAS for f in s.fields})
    widest = max(len(s.fields) for s in STANDARD_SCHEMAS)
    largest = max(m.maximum or 0 for s in STANDARD_SCHEMAS for m in s.measures)
    value = {
        "anyOf": [
            {"type": "null"},
            {"type": "integer", "minimum": 0, "maximum": largest},
            {"type": "string", "maxLength": MAX_TEXT, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"},
        ]
    }
    row = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": widest,
        "propertyNames": {"enum": names},
        "additionalProperties": value,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["rows"],
                        "properties": {
                            "rows": {
                                "type": "array",
                                "minItems": 1,
                                "items": row,
                                "description": "Rows as described by GET /v1/schemas/{schema_id}",
                            },
                            "generated_at": {"type": "string", "format": "date-time"},
                        },
                        "additionalProperties": False,
                    },
                },
                "text/csv": {"schema": {"type": "string", "minLength": 1}},
            },
        }
    }


_PUSH_BODY = _push_body()


@router.post(
    "/{schema_id}",
    status_code=201,
    response_model=Receipt,
    responses={
        200: {"model": Receipt, "description": "Dry run: what would be stored"},
        **documented(400, 401, 403, 404, 408, 413, 415, 422),
    },
    openapi_extra=_PUSH_BODY,
    summary="Push a report (JSON or CSV); all or nothing",
)
async def push_report(
    schema_id: SchemaId,
    request: Request,
    response: Response,
    node: NodeDep,
    agency: CurrentAgency,
    dry_run: Annotated[bool, Query(description="Validate and preview; store nothing")] = False,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> Receipt:
    schema = node.registry.get(schema_id)
    if not agency.may_push(schema.id):  # logged, then 403, before the body is read
        now = dt.datetime.now(dt.UTC)
        await run_in_threadpool(
            reports.refuse_push, node.engine, token=agency, schema_id=schema.id, now=now
        )
    content_type = media_type(request)  # a charset we do not read is refused unread
    body = await read_body(request, node.settings.max_body_bytes)
    stored = await run_in_threadpool(
        validate_and_store,
        node,
        agency,
        schema_id,
        body,
        content_type,
        idempotency_key,
        dry_run,
    )
    if dry_run:
        response.status_code = 200
    elif not stored.replayed:
        request.app.state.metrics.stored(stored.schema_id, stored.rows)
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return receipt_of(stored, dry_run=dry_run)


def validate_and_store(
    node: Node,
    agency: TokenRecord,
    schema_id: str,
    body: bytes,
    content_type: str,
    key: str | None,
    dry_run: bool,
) -> reports.StoredReport:
    batch = parse_report(body, content_type, node.registry.get(schema_id), node.validation)
    return reports.store(
        node.engine,
        batch=batch,
        token=agency,
        idempotency_key=key,
        now=dt.datetime.now(dt.UTC),
        dry_run=dry_run,
    )


@router.get(
    "",
    response_model=ReportList,
    responses=documented(401, 403, 422),
    summary="List your own reports",
)
async def list_reports(
    node: NodeDep,
    agency: CurrentAgency,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Only reports with a smaller id")
    ] = None,
) -> ReportList:
    found = await run_in_threadpool(
        reports.list_for, node.engine, token=agency, limit=limit, before=before
    )
    next_before = found[-1].id if len(found) == limit else None
    return ReportList(reports=[receipt_of(r) for r in found], next_before=next_before)


@router.get(
    "/{report_id}",
    response_model=ReportDetail,
    responses=documented(401, 403, 404, 422),
    summary="Read back one of your reports with its stored rows",
)
async def get_report(
    report_id: Annotated[int, Path(ge=1, le=2**62)],
    node: NodeDep,
    agency: CurrentAgency,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> ReportDetail:
    stored = await run_in_threadpool(
        reports.get_for, node.engine, token=agency, report_id=report_id
    )
    rows = await run_in_threadpool(
        reports.rows_of, node.engine, token=agency, report_id=report_id, offset=offset, limit=limit
    )
    return ReportDetail(**receipt_of(stored).model_dump(), stored_rows=rows, offset=offset)
