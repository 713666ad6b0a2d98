"""The agency API for reports too large for one request: upload sessions.

``POST /v1/uploads`` opens a session, ``PUT /v1/uploads/{id}/parts/{n}`` sends part ``n``
(in any order; sending it again replaces it), ``GET /v1/uploads/{id}`` lists the parts held
with their SHA-256, ``POST /v1/uploads/{id}/commit`` stores the whole file as one report or
nothing, and ``DELETE /v1/uploads/{id}`` abandons it. See ``nodes.upload_sessions``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from exchange.api import upload_commit
from exchange.api.bodies import read_body
from exchange.api.dependencies import CurrentAgency, NodeDep
from exchange.api.problems import documented
from exchange.api.routes.reports import Receipt, receipt_of
from nodes import reports, upload_sessions
from nodes.upload_sessions import MAX_PARTS, Session

router = APIRouter(prefix="/v1/uploads", tags=["agency"])

UploadId = Annotated[
    str, Path(description="The id the node gave the upload", min_length=1, max_length=32)
]


class OpenUpload(BaseModel):
    """What the file will be: its schema, its format and, optionally, when it was produced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_id: str = Field(max_length=64, examples=["weekly_epi@1"])
    media_type: Literal["text/csv", "application/x-ndjson"] = Field(
        description="CSV with its header first, or JSON Lines (one row object per line)"
    )
    generated_at: str | None = Field(
        default=None, max_length=40, json_schema_extra={"format": "date-time"}
    )

    @field_validator("generated_at")
    @classmethod
    def _aware(cls, value: str | None) -> str | None:
        if value is not None and _aware_time(value) is None:
            raise ValueError("an RFC 3339 date-time with its offset, e.g. 2026-01-20T08:00:00Z")
        return value


def _aware_time(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo is not None else None


class PartReceipt(BaseModel):
    number: int
    size: int
    sha256: str


class Upload(BaseModel):
    """An upload session as the node holds it."""

    upload_id: str
    schema_id: str
    media_type: str
    state: Literal["open", "committed"]
    created_at: dt.datetime
    expires_at: dt.datetime
    max_part_bytes: int
    max_upload_bytes: int
    max_parts: int
    parts: list[PartReceipt]
    bytes: int
    report_id: int | None


class Commit(BaseModel):
    """What the client believes it sent; the commit is refused if the node holds otherwise."""

    model_config = ConfigDict(extra="forbid", strict=True)

    parts: int | None = Field(default=None, ge=1, le=MAX_PARTS, strict=False)
    sha256: str | None = Field(default=None, pattern="^[0-9a-fA-F]{64}$")

    @field_validator("parts", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        # JSON's 3.0 is the integer 3 (as JSON Schema says); true or "3" is no count of parts
        if isinstance(value, bool | str):
            raise ValueError("a whole number of parts")
        return value


def _upload(session: Session, request: Request) -> Upload:
    settings = request.app.state.node.settings
    return Upload(
        upload_id=session.public_id,
        schema_id=session.schema_id,
        media_type=session.media_type,
        state="committed" if session.state == "committed" else "open",
        created_at=session.created_at,
        expires_at=session.expires_at,
        max_part_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_parts=MAX_PARTS,
        parts=[PartReceipt(number=p.number, size=p.size, sha256=p.sha256) for p in session.parts],
        bytes=session.size,
        report_id=session.report_id,
    )


@router.post(
    "",
    status_code=201,
    response_model=Upload,
    responses={
        200: {"model": Upload, "description": "The upload opened earlier with this key"},
        **documented(400, 401, 403, 404, 409, 422),
    },
    summary="Open an upload session for a report too large for one push",
)
async def open_upload(
    request: Request,
    response: Response,
    node: NodeDep,
    agency: CurrentAgency,
    body: OpenUpload,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> Upload:
    schema = node.registry.get(body.schema_id)
    now = dt.datetime.now(dt.UTC)
    if not agency.may_push(schema.id):
        await run_in_threadpool(
            reports.refuse_push, node.engine, token=agency, schema_id=schema.id, now=now
        )
    generated = _aware_time(body.generated_at) if body.generated_at else None
    session, reused = await run_in_threadpool(
        lambda: upload_sessions.open_session(
            node.engine,
            token=agency,
            schema_id=schema.id,
            media_type=body.media_type,
            generated_at=generated,
            key=idempotency_key,
            now=now,
        )
    )
    if reused:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/uploads/{session.public_id}"
    return _upload(session, request)


@router.get(
    "/{upload_id}",
    response_model=Upload,
    responses=documented(401, 403, 404, 422),
    summary="The parts an upload holds, with their SHA-256",
)
async def get_upload(
    upload_id: UploadId, request: Request, node: NodeDep, agency: CurrentAgency
) -> Upload:
    now = dt.datetime.now(dt.UTC)
    session = await run_in_threadpool(
        lambda: upload_sessions.get(node.engine, token=agency, public_id=upload_id, now=now)
    )
    return _upload(session, request)


@router.put(
    "/{upload_id}/parts/{number}",
    response_model=PartReceipt,
    responses=documented(400, 401, 403, 404, 408, 409, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "minLength": 1}}},
        }
    },
    summary="Send (or send again) one part of the file",
)
async def put_part(
    upload_id: UploadId,
    number: Annotated[int, Path(ge=1, le=MAX_PARTS)],
    request: Request,
    node: NodeDep,
    agency: CurrentAgency,
) -> PartReceipt:
    data = await read_body(request, node.settings.max_body_bytes)
    now = dt.datetime.now(dt.UTC)
    part = await run_in_threadpool(
        lambda: upload_sessions.put_part(
            node.engine,
            token=agency,
            public_id=upload_id,
            number=number,
            data=data,
            max_bytes=node.settings.max_upload_bytes,
            now=now,
        )
    )
    return PartReceipt(number=part.number, size=part.size, sha256=part.sha256)


@router.post(
    "/{upload_id}/commit",
    status_code=201,
    response_model=Receipt,
    responses={
        200: {"model": Receipt, "description": "Dry run, or the upload was committed before"},
        **documented(400, 401, 403, 404, 409, 422),
    },
    summary="Store the whole file as one report, or nothing and every error",
)
async def commit_upload(
    upload_id: UploadId,
    request: Request,
    response: Response,
    node: NodeDep,
    agency: CurrentAgency,
    body: Annotated[Commit | None, Body()] = None,
    dry_run: Annotated[bool, Query(description="Validate and preview; store nothing")] = False,
) -> Receipt:
    claims = body or Commit()
    now = dt.datetime.now(dt.UTC)
    stored = await run_in_threadpool(
        lambda: upload_commit.commit(
            node,
            token=agency,
            public_id=upload_id,
            parts=claims.parts,
            sha256=claims.sha256,
            dry_run=dry_run,
            now=now,
        )
    )
    if dry_run or stored.replayed:
        response.status_code = 200
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    elif not dry_run:
        request.app.state.metrics.stored(stored.schema_id, stored.rows)
    return receipt_of(stored, dry_run=dry_run and not stored.replayed)


@router.delete(
    "/{upload_id}",
    status_code=204,
    responses=documented(401, 403, 404, 409, 422),
    summary="Abandon an open upload and delete its parts",
)
async def abandon_upload(upload_id: UploadId, node: NodeDep, agency: CurrentAgency) -> Response:
    now = dt.datetime.now(dt.UTC)
    await run_in_threadpool(
        lambda: upload_sessions.abandon(node.engine, token=agency, public_id=upload_id, now=now)
    )
    return Response(status_code=204)
