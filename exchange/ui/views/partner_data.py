"""Partner data: the releases this node received from its peers, for analysts and operators.

The list pages through what ``nodes.releases.received`` holds, newest first. A release's
page re-checks its signature over the stored bytes (``pulling.reverify``), then draws one
epidemic curve per area with its 95% accuracy band (``exchange.ui.charts``), each with its
data as a table. Downloads are the CSV the CLI writes (``release_view.release_csv``), a FHIR
R4 MeasureReport and HXL-tagged CSV (``exchange.formats``), and the peer's signed JSON
exactly as received, byte for byte: the evidence, not a copy of it.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from babel.numbers import format_decimal
from fastapi import Query, Request
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from exchange import i18n
from exchange.api.dependencies import NodeDep
from exchange.clients import pulling
from exchange.clients.release_view import TIME_DIMENSION, Rendering, Series, curves, rendered
from exchange.signing.signatures import SignatureError, UnknownKeyError
from exchange.ui import charts
from exchange.ui.pages import page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import AnalystViewer
from nodes.node import Node
from nodes.releases import received
from schemas.errors import N_, InvalidInputError, NotFoundError
from schemas.labels import Language
from schemas.model import ReportSchema

router = page_router()

RELEASES_PER_PAGE = 20
#: Charts per page of a release: enough to compare neighbours, light on a field connection.
CURVES_PER_PAGE = 20
#: Cells per page of a release that has no week to draw a curve along.
CELLS_PER_PAGE = 200

Page = Annotated[int, Query(ge=1, le=1_000_000)]
MeasureName = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


@dataclass(frozen=True)
class Question:
    """What was asked and answered, as a page shows it."""

    schema_id: str
    schema_label: str
    group_by: list[tuple[str, str | None]]  # dimension label, granularity
    measures: list[tuple[str, str]]  # name, label
    filters: list[tuple[str, str]]  # dimension label, values
    since: str
    until: str
    purpose: str
    epsilon_spent: float
    release_epsilon: float
    cached: bool
    created_at: dt.datetime | None
    release_id: str
    confidence: float
    accuracy: dict[str, float]


def _schema(node: Node, schema_id: str) -> ReportSchema | None:
    return node.registry.get(schema_id) if schema_id in node.registry else None


def _label(schema: ReportSchema | None, name: str, language: Language) -> str:
    if schema is not None and name in schema.measure_by_name:
        return schema.measure_by_name[name].label.get(language)
    if schema is not None and name in schema.field_by_name:
        return schema.field_by_name[name].label.get(language)
    if name == TIME_DIMENSION:
        return i18n.translated(N_("Week"), language)
    return name


def _when(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def question(node: Node, document: dict[str, Any], language: Language) -> Question:
    release = document["release"]
    asked = release.get("query", {})
    schema = _schema(node, str(release.get("schema", "")))
    group_by = []
    for item in asked.get("group_by", release.get("dimensions", [])):
        name, _, grain = str(item).partition(":")
        # week:week says nothing more than week; adm1 or month does
        group_by.append(
            (_label(schema, name, language), grain if grain and grain != name else None)
        )
    return Question(
        schema_id=str(release.get("schema", "")),
        schema_label=schema.label.get(language) if schema else str(release.get("schema", "")),
        group_by=group_by,
        measures=[(str(m), _label(schema, str(m), language)) for m in release.get("measures", [])],
        filters=[
            (_label(schema, str(d), language), ", ".join(map(str, values)))
            for d, values in asked.get("filters", {}).items()
        ],
        since=str(asked.get("since", "")),
        until=str(asked.get("until", "")),
        purpose=str(asked.get("purpose", "")),
        epsilon_spent=float(release.get("epsilon_spent", 0)),
        release_epsilon=float(release.get("release_epsilon", release.get("epsilon_spent", 0))),
        cached=bool(release.get("cached", False)),
        created_at=_when(release.get("created_at")),
        release_id=str(release.get("release_id", "")),
        confidence=float(release.get("confidence", 0.95)),
        accuracy={str(m): float(a) for m, a in release.get("accuracy", {}).items()},
    )


@router.get("/ui/received")
async def received_list(
    request: Request, node: NodeDep, _viewer: AnalystViewer, page: Page = 1
) -> Response:
    offset = (page - 1) * RELEASES_PER_PAGE
    listed, total = await run_in_threadpool(
        lambda: (
            received.listing(node.engine, offset=offset, limit=RELEASES_PER_PAGE),
            received.count(node.engine),
        )
    )
    language: Language = request.state.language
    rows = [(item, question(node, item.release.document, language)) for item in listed]
    return render(
        request,
        "partner_data/list.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / RELEASES_PER_PAGE)),
        },
    )


def _not_found(received_id: int, language: Language) -> NotFoundError:
    sentence = i18n.translated(N_("This node has received no release numbered {id}."), language)
    return NotFoundError(sentence.format(id=received_id))


async def _find(node: Node, received_id: int, language: Language) -> received.Listed:
    try:
        return await run_in_threadpool(received.find, node.engine, received_id)
    except NotFoundError:
        raise _not_found(received_id, language) from None


@dataclass(frozen=True)
class SignatureStatus:
    state: str  # verified, revoked (verified, key revoked since), unchecked, failed
    key_id: str
    revoked_at: dt.datetime | None = None


def signature_status(node: Node, stored: received.ReceivedRelease) -> SignatureStatus:
    try:
        checked = pulling.reverify(node, stored)
    except UnknownKeyError:
        return SignatureStatus("unchecked", stored.key_id)
    except SignatureError:
        return SignatureStatus("failed", stored.key_id)
    if checked.key.revoked_at is not None:
        return SignatureStatus("revoked", checked.signature.key_id, checked.key.revoked_at)
    return SignatureStatus("verified", checked.signature.key_id)


def _number(language: Language) -> Callable[[float], str]:
    return functools.partial(_format, language=language)


def _format(value: float, *, language: Language) -> str:
    return format_decimal(value, format="#,##0.##", locale=language)


@dataclass(frozen=True)
class Curve:
    title: str
    svg: Markup
    weeks: list[charts.Week]


def _curve(series: Series, measure: str, label: str, week_label: str, language: Language) -> Curve:
    weeks = [
        charts.Week(
            label=str(cell[TIME_DIMENSION]),
            value=None if cell[measure].get("suppressed") else cell[measure].get("value"),
            accuracy=float(cell[measure].get("accuracy") or 0.0),
        )
        for cell in series.cells
    ]
    where = " · ".join(series.key) or i18n.translated(N_("all areas"), language)
    title = i18n.translated(
        N_("{measure} per week in {where}, with the 95% accuracy band"), language
    ).format(measure=label, where=where)
    text = charts.CurveText(
        title=title,
        x_axis=week_label,
        y_axis=label,
        line=label,
        band=i18n.translated(N_("95% band"), language),
        suppressed=i18n.translated(N_("suppressed"), language),
        empty=i18n.translated(N_("Every value is suppressed: nothing to draw."), language),
    )
    svg = charts.epidemic_curve(weeks, text=text, number=_number(language))
    # Markup, not |safe in the template: ElementTree escaped every text and attribute.
    return Curve(title, Markup(svg), weeks)  # noqa: S704


@router.get("/ui/received/{received_id:int}")
async def received_release(
    request: Request,
    node: NodeDep,
    _viewer: AnalystViewer,
    received_id: int,
    page: Page = 1,
    measure: MeasureName = None,
) -> Response:
    language: Language = request.state.language
    found = await _find(node, received_id, language)
    status = await run_in_threadpool(signature_status, node, found.release)
    document = found.release.document
    asked = question(node, document, language)
    names = [name for name, _label in asked.measures]
    shown = measure or (names[0] if names else "")
    if shown not in names:
        sentence = i18n.translated(N_("This release has no measure {measure}."), language)
        raise InvalidInputError(sentence.format(measure=shown))
    labels = dict(asked.measures)
    series = curves(document)
    context: dict[str, Any] = {
        "item": found,
        "stored": found.release,
        "document": document,
        "asked": asked,
        "status": status,
        "measure": shown,
        "measure_label": labels[shown],
        "page": page,
    }
    if series:
        chosen = series[(page - 1) * CURVES_PER_PAGE : page * CURVES_PER_PAGE]
        schema = _schema(node, asked.schema_id)
        week_label = _label(schema, TIME_DIMENSION, language)
        context |= {
            "curves": [_curve(s, shown, labels[shown], week_label, language) for s in chosen],
            "series_total": len(series),
            "first": (page - 1) * CURVES_PER_PAGE + 1,
            "pages": max(1, math.ceil(len(series) / CURVES_PER_PAGE)),
        }
    else:
        cells = document["release"]["cells"]
        dims = [str(d) for d in document["release"].get("dimensions", [])]
        schema = _schema(node, asked.schema_id)
        context |= {
            "curves": None,
            "dimensions": [(d, _label(schema, d, language)) for d in dims],
            "cells": cells[(page - 1) * CELLS_PER_PAGE : page * CELLS_PER_PAGE],
            "cells_total": len(cells),
            "first": (page - 1) * CELLS_PER_PAGE + 1,
            "pages": max(1, math.ceil(len(cells) / CELLS_PER_PAGE)),
        }
    return render(request, "partner_data/release.html", context)


#: The downloads of a received release besides its signed JSON: suffix, rendering, media type.
DOWNLOADS: dict[str, tuple[Rendering, str]] = {
    "csv": ("csv", "text/csv; charset=utf-8"),
    "hxl.csv": ("hxl", "text/csv; charset=utf-8"),
    "fhir.json": ("fhir", "application/fhir+json"),
}


def _attachment(body: str | bytes, media_type: str, filename: str) -> Response:
    disposition = f'attachment; filename="{filename}"'
    return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})


@router.get("/ui/received/{received_id:int}.json")
async def received_json(
    request: Request, node: NodeDep, _viewer: AnalystViewer, received_id: int
) -> Response:
    """The response body the peer signed, as received: it verifies against its signature."""
    found = await _find(node, received_id, request.state.language)
    return _attachment(
        found.release.response.body, "application/json", f"received-{received_id}.json"
    )


def _download(suffix: str, kind: Rendering, media_type: str) -> None:
    """The route of one rendered download: CSV, HXL-tagged CSV or a FHIR MeasureReport, its
    weeks read in this node's numbering (the release does not name one; a federation shares
    it)."""

    async def download(
        request: Request, node: NodeDep, _viewer: AnalystViewer, received_id: int
    ) -> Response:
        found = await _find(node, received_id, request.state.language)
        text = rendered(
            found.release.document,
            kind,
            registry=node.registry,
            week_system=node.settings.week_system,
        )
        return _attachment(text, media_type, f"received-{received_id}.{suffix}")

    router.get(f"/ui/received/{{received_id:int}}.{suffix}", name=f"received_{kind}")(download)


for _suffix, (_kind, _media_type) in DOWNLOADS.items():
    _download(_suffix, _kind, _media_type)
