"""DHIS2's ``POST /api/dataValueSets``, so a DHIS2 instance can push to a node unchanged.

A DHIS2 aggregate data exchange (target type external) appends ``/api/dataValueSets`` to
the target's base URL and sends the agency's token as ``Authorization: ApiToken ...``.
The set goes through the node's ``dhis2.yaml`` into one report (``exchange.formats.dhis2``)
and is stored like any push (``nodes.reports.store``): all or nothing, durable before the
answer, audited. The answer is DHIS2's import summary in its web message, so the instance
shows the outcome; errors before the import (401, 403, 413, 415) stay problem+json.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from exchange.api import dhis2_json, strict_json
from exchange.api.bodies import CSV_TYPES, media_type, read_body
from exchange.api.dependencies import CurrentAgencyOrApiToken, NodeDep
from exchange.api.problems import UnsupportedMediaTypeError, documented
from exchange.formats import dhis2_values
from exchange.formats.dhis2 import ConflictsFoundError, IdSchemes, convert
from exchange.formats.dhis2_mapping import (
    MAPPING_FILE,
    DhisMapping,
    MappingError,
    mapping_from_yaml,
)
from exchange.formats.dhis2_summary import (
    Counts,
    compare,
    conflicts_description,
    import_summary,
    refusal,
)
from nodes import reports
from nodes.node import Node
from nodes.tokens import TokenRecord

router = APIRouter(tags=["agency", "dhis2"])

_SCHEMES = ("UID", "CODE")
_STRATEGIES = ("CREATE_AND_UPDATE", "CREATE", "UPDATE", "DELETE", "NEW_AND_UPDATES", "UPDATES")


class ImportCount(BaseModel):
    imported: int
    updated: int
    ignored: int
    deleted: int


class ImportConflict(BaseModel):
    object: str
    objects: dict[str, str]
    value: str = Field(description="What is wrong, in a sentence naming the offending value")
    errorCode: str = Field(description="DHIS2's error code (E7600 to E7645)")
    property: str
    indexes: list[int] = Field(description="0-based indexes of the data values concerned")


class ImportSummary(BaseModel):
    responseType: Literal["ImportSummary"]
    status: Literal["SUCCESS", "ERROR"]
    importOptions: dict[str, Any]
    description: str
    importCount: ImportCount
    conflicts: list[ImportConflict]
    rejectedIndexes: list[int]
    dataSetComplete: str


class WebMessage(BaseModel):
    """DHIS2's web message around an import summary (DHIS2 2.38 and later)."""

    httpStatus: Literal["OK", "Conflict"]
    httpStatusCode: Literal[200, 409]
    status: Literal["OK", "ERROR"]
    message: str
    response: ImportSummary


_FLAGS = ("followup", "deleted")
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A DHIS2 data value set (DHIS2 Web API, 'Sending data values')",
                    "properties": {
                        "dataSet": {"type": "string"},
                        "completeDate": {"type": "string"},
                        "period": {"type": "string", "examples": ["2026W5"]},
                        "orgUnit": {"type": "string"},
                        "attributeOptionCombo": {"type": "string"},
                        "dataValues": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    name: {"type": "boolean" if name in _FLAGS else "string"}
                                    for name in dhis2_json.VALUE_FIELDS
                                },
                            },
                        },
                    },
                }
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "DHIS2 CSV (also read as application/csv): "
                    + ",".join(dhis2_values.CSV_COLUMNS),
                }
            },
        },
    }
}

Scheme = Annotated[
    str | None,
    Query(max_length=40, description="UID (default) or CODE; other schemes are refused"),
]


@router.post(
    "/api/dataValueSets",
    response_model=WebMessage,
    responses={
        409: {"model": WebMessage, "description": "Conflicts or a refused set: nothing stored"},
        **documented(401, 403, 408, 413, 415, 422),
    },
    openapi_extra=_BODY,
    summary="Import a DHIS2 data value set (JSON or CSV) as one report; all or nothing",
)
async def import_data_value_set(
    request: Request,
    node: NodeDep,
    agency: CurrentAgencyOrApiToken,
    dryRun: Annotated[bool, Query(description="Check and count; store nothing")] = False,
    importStrategy: Annotated[
        str | None, Query(max_length=40, description="CREATE_AND_UPDATE only")
    ] = None,
    idScheme: Scheme = None,
    dataElementIdScheme: Scheme = None,
    orgUnitIdScheme: Scheme = None,
    categoryOptionComboIdScheme: Scheme = None,
    skipAudit: Annotated[
        bool | None,
        Query(description="Sent by DHIS2's data exchange; ignored: every import is audited"),
    ] = None,
) -> JSONResponse:
    content_type = media_type(request)
    if content_type not in CSV_TYPES and not (
        content_type == "application/json" or content_type.endswith("+json")
    ):
        raise UnsupportedMediaTypeError.coded(
            "content_type_not_read", content_type=content_type[:40] or "(none)"
        )
    body = await read_body(request, node.settings.max_body_bytes)
    general = (idScheme or "UID").upper()
    chosen = {
        "idScheme": general,
        "dataElementIdScheme": (dataElementIdScheme or general).upper(),
        "orgUnitIdScheme": (orgUnitIdScheme or general).upper(),
        "categoryOptionComboIdScheme": (categoryOptionComboIdScheme or general).upper(),
    }
    schemes = IdSchemes(
        data_element=_scheme(chosen["dataElementIdScheme"]),
        org_unit=_scheme(chosen["orgUnitIdScheme"]),
        category_option_combo=_scheme(chosen["categoryOptionComboIdScheme"]),
        other=_scheme(general),
    )
    refused = _refused_parameters(chosen, importStrategy)
    if refused:
        status, message = refusal(refused, values=0, schemes=schemes, dry_run=dryRun)
        return JSONResponse(message, status_code=status)
    status, message, stored = await run_in_threadpool(
        import_body, node, agency, body, content_type, schemes, dryRun
    )
    if stored is not None and not dryRun:
        request.app.state.metrics.stored(stored.schema_id, stored.rows)
    return JSONResponse(message, status_code=status)


def _scheme(name: str) -> Literal["UID", "CODE"]:
    return "CODE" if name == "CODE" else "UID"


def _refused_parameters(schemes: dict[str, str], strategy: str | None) -> str | None:
    for name, value in schemes.items():
        if value not in _SCHEMES:
            return (
                f"{name}={value} is not supported; this node reads identifiers by UID or CODE "
                "(map them in its dhis2.yaml)"
            )
    if strategy is not None and strategy.upper() != "CREATE_AND_UPDATE":
        known = strategy.upper() in _STRATEGIES
        return f"importStrategy={strategy} is not supported; " + (
            "a node keeps every report: it stores new values and corrections "
            "(CREATE_AND_UPDATE) and never deletes or refuses one for existing"
            if known
            else "the only import strategy is CREATE_AND_UPDATE"
        )
    return None


def import_body(
    node: Node,
    agency: TokenRecord,
    body: bytes,
    content_type: str,
    schemes: IdSchemes,
    dry_run: bool,
) -> tuple[int, dict[str, Any], reports.StoredReport | None]:
    """Read, convert, compare with the current cells and store what changes."""
    try:
        mapping = load_mapping(node)
    except MappingError as exc:
        status, message = refusal(str(exc), values=0, schemes=schemes, dry_run=dry_run)
        return status, message, None
    try:
        values = _read(body, content_type, mapping, schemes)
    except dhis2_values.DataValueSetError as exc:
        status, message = refusal(str(exc), values=0, schemes=schemes, dry_run=dry_run)
        return status, message, None
    n = values.count
    if n == 0:
        status, message = import_summary(
            counts=Counts(),
            log=None,
            description="The data value set holds no data values",
            schemes=schemes,
            dry_run=dry_run,
            failed=False,
        )
        return status, message, None
    try:
        converted = convert(values, mapping, schemes, node.validation)
    except ConflictsFoundError as exc:
        status, message = import_summary(
            counts=Counts(ignored=n),
            log=exc.log,
            description=conflicts_description(exc.log, n),
            schemes=schemes,
            dry_run=dry_run,
            failed=True,
        )
        return status, message, None
    now = dt.datetime.now(dt.UTC)
    schema_id = converted.batch.schema.id
    if not agency.may_push(schema_id):
        reports.refuse_push(node.engine, token=agency, schema_id=schema_id, now=now)
    current = reports.current_cells(node.engine, batch=converted.batch)
    comparison = compare(converted, current)
    stored = None
    if comparison.changed is None:
        if not dry_run:
            reports.record_unchanged(
                node.engine,
                token=agency,
                schema_id=schema_id,
                content_sha256=converted.batch.content_sha256(),
                values=n,
                now=now,
            )
        description = f"Every value is already current in {schema_id}; nothing new was stored"
    else:
        stored = reports.store(
            node.engine,
            batch=comparison.changed,
            token=agency,
            idempotency_key=None,
            now=now,
            dry_run=dry_run,
        )
        verb = "Would store" if dry_run else "Stored"
        where = "" if dry_run else f" as report {stored.id}"
        description = (
            f"{verb} {stored.rows} rows of {schema_id}{where}; "
            f"{stored.superseded_rows} older rows superseded"
        )
    status, message = import_summary(
        counts=comparison.counts,
        log=None,
        description=description,
        schemes=schemes,
        dry_run=dry_run,
        failed=False,
    )
    return status, message, stored


def _read(
    body: bytes, content_type: str, mapping: DhisMapping, schemes: IdSchemes
) -> dhis2_values.DataValues:
    if content_type in CSV_TYPES:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise dhis2_values.DataValueSetError(
                f"the CSV is not UTF-8 (byte {exc.start} is invalid)"
            ) from None
        return dhis2_values.from_csv(text)
    fast = dhis2_json.data_values(body, mapping, schemes)
    if fast is not None:
        return fast
    try:
        document = strict_json.loads(body)
    except strict_json.StrictJsonError as exc:
        raise dhis2_values.DataValueSetError(str(exc)) from None
    return dhis2_values.from_json(document)


_cache: dict[Path, tuple[tuple[int, int], DhisMapping]] = {}
_cache_lock = threading.Lock()


def load_mapping(node: Node) -> DhisMapping:
    """The node's ``dhis2.yaml``, checked once per change of the file (mtime and size)."""
    path = node.settings.directory / MAPPING_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise MappingError(
            [
                f"this node has no DHIS2 mapping: its operator must write {MAPPING_FILE} in "
                "the node directory (see docs/dhis2.md) and check it with "
                "'exchange dhis2 check'"
            ]
        ) from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        mapping = mapping_from_yaml(path.read_text("utf-8"), node.registry, node.gazetteer)
    except MappingError as exc:
        raise MappingError(
            [f"this node's {MAPPING_FILE} is wrong (its operator must fix it): {exc}"]
        ) from None
    with _cache_lock:
        _cache[path] = (stamp, mapping)
    return mapping
