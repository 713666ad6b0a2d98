"""An agency uploads a report: checked first, then stored (its reports: ``my_reports``).

Uploading takes two steps, as a GOV.UK form does. "Check the file" validates it exactly as
the API's push with ``dry_run`` does (``exchange.api.routes.reports``) and shows what would
be stored, or every row error; nothing is stored. "Store the report" then stores *that*
file, not a second upload: between the two steps the file is held in an upload session
(``nodes.upload_sessions``) of the agency's token. The session lives in the database (any
worker can take the confirmation), only the token that checked the file can commit or read
it, and it expires with the session (``upload_sessions.LIFETIME`` after the check). The
commit (``exchange.api.upload_commit``) validates the file again, checks its SHA-256
against the one previewed and stores it as one report, all or nothing; a second click
answers with the same report. A CSV file is held byte for byte; a JSON file is held as
JSON Lines (its rows, one per line), the form an upload session reads.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from exchange import i18n
from exchange.api import strict_json, upload_commit
from exchange.api.bodies import JsonReport
from exchange.api.dependencies import NodeDep
from exchange.api.problems import PayloadTooLargeError
from exchange.api.routes.reports import validate_and_store
from exchange.ui.pages import error_sentence, page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import AgencyViewer, CheckedForm
from nodes import reports, upload_sessions
from nodes.node import Node
from nodes.tokens import TokenRecord
from schemas.errors import N_, InvalidInputError, RowError
from schemas.labels import Language
from schemas.model import ReportSchema
from schemas.validation import ReportValidationError

router = page_router()

#: What a file's name says it holds; the part's own type is the fallback.
MEDIA_TYPES = {".csv": "text/csv", ".json": "application/json"}
#: The form around the file: the CSRF value, the schema, the part headers.
FORM_OVERHEAD = 64 * 1024
#: The error summary links to this many errors; the table below lists all that were kept.
SUMMARY_ERRORS = 10


async def upload_form_guard(request: Request, node: NodeDep) -> AsyncIterator[None]:
    """Refuse an upload larger than a push may be before the form is read (and spooled);
    close the form's spooled file afterwards, whatever happened (a refused CSRF value too)."""
    declared = request.headers.get("content-length")
    limit = node.settings.max_body_bytes + FORM_OVERHEAD
    if declared is None or not declared.isdigit():
        raise InvalidInputError(N_("The upload did not state its size. Send it from the form."))
    if int(declared) > limit:
        raise PayloadTooLargeError.coded(
            "body_too_large_declared", declared=int(declared), limit=limit
        )
    try:
        yield
    finally:
        await request.close()


@dataclass(frozen=True)
class ShownError:
    """A row error as the errors table shows it: the field's label, the reason translated."""

    row: int
    field: str
    label: str
    value: str
    reason: str


@router.get("/ui/upload")
async def upload_form(request: Request, node: NodeDep, agency: AgencyViewer) -> Response:
    return _form_page(request, node, agency.token)


@router.post("/ui/upload")
async def check_file(
    request: Request,
    node: NodeDep,
    agency: AgencyViewer,
    _guard: Annotated[None, Depends(upload_form_guard)],
    form: CheckedForm,
) -> Response:
    """Validate the file as a dry-run push; hold it for the confirmation if it is good."""
    return await _check(request, node, agency.token, form)


async def _check(request: Request, node: Node, token: TokenRecord, form: FormData) -> Response:
    language: Language = request.state.language
    schema_id, upload = form.get("schema"), form.get("file")
    if not isinstance(schema_id, str) or schema_id not in node.registry:
        return _form_page(request, node, token, error=N_("Choose the schema of your report."))
    schema = node.registry.get(schema_id)
    if not token.may_push(schema.id):  # not offered by the form: logged, then 403
        now = dt.datetime.now(dt.UTC)
        await run_in_threadpool(
            functools.partial(
                reports.refuse_push, node.engine, token=token, schema_id=schema.id, now=now
            )
        )
    problem, body, media = await _read_file(upload, node.settings.max_body_bytes, language)
    if problem is not None:
        return _form_page(request, node, token, chosen=schema.id, error=problem, field="file")
    try:
        preview = await run_in_threadpool(
            validate_and_store, node, token, schema.id, body, media, None, True
        )
    except ReportValidationError as exc:
        return _refused(request, node, token, schema, exc, filename=_name(upload))
    except InvalidInputError as exc:  # the file's shape: header, encoding, JSON
        sentence = error_sentence(exc, language)
        return _form_page(request, node, token, chosen=schema.id, error=sentence, field="file")
    upload_id, sha256 = await run_in_threadpool(_hold, node, token, schema.id, media, body)
    return render(
        request,
        "agency/preview.html",
        {
            "schema": schema,
            "schema_label": schema.label.get(language),
            "filename": _name(upload),
            "size": len(body),
            "preview": preview,
            "upload_id": upload_id,
            "sha256": sha256,
            "hours": upload_sessions.LIFETIME.total_seconds() / 3600,
        },
    )


@router.post("/ui/upload/store")
async def store_file(
    request: Request, node: NodeDep, agency: AgencyViewer, form: CheckedForm
) -> Response:
    """Store the file held at the check, as one report; a repeated click shows it again."""
    upload_id, sha256 = _field(form, "upload"), _field(form, "sha256")
    now = dt.datetime.now(dt.UTC)
    try:
        stored = await run_in_threadpool(
            functools.partial(
                upload_commit.commit,
                node,
                token=agency.token,
                public_id=upload_id,
                parts=1,
                sha256=sha256,
                dry_run=False,
                now=now,
            )
        )
    except ReportValidationError as exc:  # what is stored changed since the check
        if exc.schema is None:
            raise
        return _refused(request, node, agency.token, exc.schema, exc, filename="")
    if not stored.replayed:
        request.app.state.metrics.stored(stored.schema_id, stored.rows)
    schema = node.registry.get(stored.schema_id)
    return render(
        request,
        "agency/stored.html",
        {"report": stored, "schema_label": schema.label.get(request.state.language)},
    )


@router.post("/ui/upload/cancel")
async def cancel_upload(node: NodeDep, agency: AgencyViewer, form: CheckedForm) -> Response:
    """Drop the held file now rather than when its session expires."""
    upload_id = _field(form, "upload")
    now = dt.datetime.now(dt.UTC)
    await run_in_threadpool(
        functools.partial(
            upload_sessions.abandon, node.engine, token=agency.token, public_id=upload_id, now=now
        )
    )
    return RedirectResponse("/ui/upload", status_code=303)


def _form_page(
    request: Request,
    node: Node,
    token: TokenRecord,
    *,
    chosen: str | None = None,
    error: str | None = None,
    field: str = "schema",
) -> Response:
    language: Language = request.state.language
    return render(
        request,
        "agency/upload.html",
        {
            **_form_values(node, token, language, chosen),
            "error": None if error is None else i18n.translated(error, language),
            "error_field": field,
        },
        status_code=200 if error is None else 422,
    )


def _form_values(
    node: Node, token: TokenRecord, language: Language, chosen: str | None
) -> dict[str, object]:
    """What the upload form shows: the schemas the token may push (label, then id)."""
    choices = [
        (s.id, f"{s.label.get(language)} (\u2068{s.id}\u2069)")
        for s in node.registry
        if token.may_push(s.id)
    ]
    return {
        "schemas": choices,
        "chosen": chosen,
        "megabytes": node.settings.max_body_bytes / 1024**2,
    }


async def _read_file(
    upload: object, limit: int, language: Language
) -> tuple[str | None, bytes, str]:
    """``(problem, body, media type)``: the problem is None when the file can be checked."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        return N_("Choose a CSV or JSON file."), b"", ""
    suffix = upload.filename[upload.filename.rfind(".") :].lower() if "." in upload.filename else ""
    media = MEDIA_TYPES.get(suffix) or (upload.content_type or "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES.values():
        return N_("The file must be a CSV file (.csv) or a JSON file (.json)."), b"", ""
    body = await upload.read(limit + 1)
    if len(body) > limit:
        sentence = i18n.translated(
            N_("The file is larger than this node accepts ({megabytes} MB)."), language
        )
        return sentence.format(megabytes=f"{limit / 1024**2:g}"), b"", ""
    if not body.strip():
        return N_("The file is empty."), b"", ""
    return None, body, media


def _hold(
    node: Node, token: TokenRecord, schema_id: str, media: str, body: bytes
) -> tuple[str, str]:
    """Keep the checked file in an upload session of ``token``: its id and the SHA-256 held."""
    data, kind, generated = (body, "text/csv", None) if media == "text/csv" else _json_lines(body)
    now = dt.datetime.now(dt.UTC)
    session, _reused = upload_sessions.open_session(
        node.engine,
        token=token,
        schema_id=schema_id,
        media_type=kind,
        generated_at=generated,
        key=None,
        now=now,
    )
    upload_sessions.put_part(
        node.engine,
        token=token,
        public_id=session.public_id,
        number=1,
        data=data,
        max_bytes=node.settings.max_upload_bytes,
        now=now,
    )
    return session.public_id, hashlib.sha256(data).hexdigest()


def _json_lines(body: bytes) -> tuple[bytes, str, dt.datetime | None]:
    """A checked JSON report as JSON Lines: row ``n`` of the array is line ``n``, so the
    commit numbers rows as the check did."""
    document = strict_json.loads(body)
    envelope = JsonReport.model_validate(
        {"rows": document} if isinstance(document, list) else document
    )
    lines = b"".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for row in envelope.rows
    )
    generated = envelope.generated_at.astimezone(dt.UTC) if envelope.generated_at else None
    return lines, "application/x-ndjson", generated


def _refused(
    request: Request,
    node: Node,
    token: TokenRecord,
    schema: ReportSchema,
    exc: ReportValidationError,
    *,
    filename: str,
) -> Response:
    language: Language = request.state.language
    shown = [_shown(e, schema, language) for e in exc.errors]
    return render(
        request,
        "agency/refused.html",
        {
            **_form_values(node, token, language, schema.id),
            "error": None,
            "error_field": "",
            "schema": schema,
            "schema_label": schema.label.get(language),
            "filename": filename,
            "errors": shown,
            "summary_errors": shown[:SUMMARY_ERRORS],
            "total": exc.total,
        },
        status_code=422,
    )


def _shown(error: RowError, schema: ReportSchema, language: Language) -> ShownError:
    return ShownError(
        row=error.row,
        field=error.field,
        label=_label(schema, error.field, language),
        value=error.value,
        reason=i18n.row_detail(error, language, schema),
    )


def _label(schema: ReportSchema, name: str, language: Language) -> str:
    """A field's label (``a+b``: both; ``*``: the row), as the reasons name fields."""
    if name == "*":
        return i18n.translated(N_("the whole row"), language)
    return " + ".join(
        field.label.get(language) if (field := schema.field_by_name.get(part)) else part
        for part in name.split("+")
    )


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidInputError(N_("The form is incomplete. Start again from the upload page."))
    return value


def _name(upload: object) -> str:
    return upload.filename or "" if isinstance(upload, UploadFile) else ""
