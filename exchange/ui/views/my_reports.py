"""An agency's own reports, newest first, and each one's stored rows and corrections."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from exchange.api.dependencies import NodeDep
from exchange.ui.pages import page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import AgencyViewer
from nodes import reports
from schemas.labels import Language
from schemas.model import FieldType, ReportSchema
from schemas.standard import WEEK

router = page_router()

REPORTS_PER_PAGE = 50
ROWS_PER_PAGE = 100


@router.get("/ui/reports")
async def my_reports(
    request: Request,
    node: NodeDep,
    agency: AgencyViewer,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    found = await run_in_threadpool(
        functools.partial(
            reports.list_for,
            node.engine,
            token=agency.token,
            limit=REPORTS_PER_PAGE,
            before=before,
        )
    )
    language: Language = request.state.language
    return render(
        request,
        "agency/reports.html",
        {
            "reports": found,
            "labels": {s.id: s.label.get(language) for s in node.registry},
            "before": before,
            "next_before": found[-1].id if len(found) == REPORTS_PER_PAGE else None,
        },
    )


@router.get("/ui/reports/{report_id}")
async def one_report(
    request: Request,
    node: NodeDep,
    agency: AgencyViewer,
    report_id: Annotated[int, Path(ge=1, le=2**62)],
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    token = agency.token
    stored = await run_in_threadpool(
        functools.partial(reports.get_for, node.engine, token=token, report_id=report_id)
    )
    rows = await run_in_threadpool(
        functools.partial(
            reports.rows_of,
            node.engine,
            token=token,
            report_id=report_id,
            offset=offset,
            limit=ROWS_PER_PAGE,
        )
    )
    schema = node.registry.get(stored.schema_id)
    language: Language = request.state.language
    return render(
        request,
        "agency/report.html",
        {
            "report": stored,
            "schema_label": schema.label.get(language),
            "columns": _columns(schema, language),
            "rows": rows,
            "offset": offset,
            "per_page": ROWS_PER_PAGE,
        },
    )


def _columns(schema: ReportSchema, language: Language) -> list[tuple[str, str, bool]]:
    """The stored columns of ``schema``: ``(name, label, is a count)``."""
    out: list[tuple[str, str, bool]] = []
    for name in schema.stored_columns:
        field = schema.field_by_name.get(name, WEEK)
        out.append(
            (name, field.label.get(language), schema.dimension_type(name) == FieldType.COUNT)
        )
    return out
