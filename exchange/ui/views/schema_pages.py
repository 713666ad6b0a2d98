"""Each schema's reference page (fields, code lists, labels) and its CSV template.

The page reads what ``GET /v1/schemas/{id}`` answers (``schemas.describe.describe``), in
the page's language, and adds how each value is written. The template is the header row
alone: an example row would be valid data, and a template sent back unchanged would then
store (and supersede) a real-looking cell. The reference page shows the format instead.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Annotated, Any

from babel.numbers import format_decimal
from fastapi import Path, Request
from starlette.responses import Response

from exchange import i18n
from exchange.api.dependencies import NodeDep
from exchange.ui.pages import page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import Viewer
from schemas.columns import MAX_TEXT
from schemas.describe import describe
from schemas.errors import N_
from schemas.gazetteer import Gazetteer
from schemas.labels import Language
from schemas.model import FieldType, ReportSchema

router = page_router()

SchemaId = Annotated[str, Path(max_length=64)]

#: A field type as a data manager says it.
TYPE_NAMES: Mapping[str, str] = {
    FieldType.AREA: N_("Organisation unit"),
    FieldType.WEEK: N_("Period (epi week)"),
    FieldType.CODE: N_("Code"),
    FieldType.DATE: N_("Date"),
    FieldType.COUNT: N_("Whole number"),
    FieldType.TEXT: N_("Text"),
}
KIND_NAMES: Mapping[str, str] = {
    "aggregate": N_("Aggregate: counts per cell"),
    "case_based": N_("Case-based: one row per case"),
}
MEASURE_KINDS: Mapping[str, str] = {
    "flow": N_("Flow: events in a period, may be added over weeks"),
    "stock": N_("Stock: a level at one time, never added over weeks"),
}


@router.get("/ui/schemas")
async def schema_list(request: Request, node: NodeDep, viewer: Viewer) -> Response:
    language: Language = request.state.language
    listed = [
        {
            "id": s.id,
            "label": s.label.get(language),
            "description": s.description.get(language),
            "kind": KIND_NAMES[s.kind.value],
            "fields": len(s.fields),
            "pushable": viewer.token.may_push(s.id),
        }
        for s in node.registry
    ]
    return render(request, "schemas/list.html", {"schemas": listed})


@router.get("/ui/schemas/{schema_id}")
async def schema_page(
    request: Request, node: NodeDep, viewer: Viewer, schema_id: SchemaId
) -> Response:
    language: Language = request.state.language
    schema = node.registry.get(schema_id)
    described = describe(schema, language, node.gazetteer)
    for entry in described["fields"]:
        entry["type_name"] = TYPE_NAMES[entry["type"]]
        entry["format"] = _format(schema, entry["name"], language, node.gazetteer)
    for entry in described["dimensions"]:
        entry["type_name"] = TYPE_NAMES[entry["type"]]
    for entry in described["measures"]:
        entry["kind_name"] = MEASURE_KINDS[entry["kind"]]
    return render(
        request,
        "schemas/schema.html",
        {
            "schema": described,
            "kind": KIND_NAMES[described["kind"]],
            "pushable": viewer.token.may_push(schema.id),
            "areas": len(node.gazetteer.areas),
        },
    )


@router.get("/ui/schemas/{schema_id}/template.csv")
async def schema_template(node: NodeDep, viewer: Viewer, schema_id: SchemaId) -> Response:
    """The header row a CSV report of this schema starts with, as a file to fill in."""
    schema = node.registry.get(schema_id)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(f.name for f in schema.fields)
    filename = f"{schema.name}-v{schema.version}-template.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _format(schema: ReportSchema, name: str, language: Language, gazetteer: Gazetteer) -> str:
    """How a value of field ``name`` is written, with an example where one helps."""
    kind = schema.dimension_type(name)
    params: dict[str, Any] = {}
    match kind:
        case FieldType.AREA:
            deepest = gazetteer.at_level(gazetteer.max_level)
            sentence = N_("A code of this node's gazetteer, for example {example}")
            params["example"] = deepest[0] if deepest else gazetteer.root.code
        case FieldType.WEEK:
            sentence = N_("YYYY-Www, for example {example}")
            params["example"] = "2026-W05"
        case FieldType.CODE:
            sentence = N_("One of the codes listed below")
        case FieldType.DATE:
            sentence = N_("YYYY-MM-DD, for example {example}")
            params["example"] = "2026-02-03"
        case FieldType.COUNT:
            maximum = schema.measure_by_name[name].maximum
            sentence = N_("A whole number from 0 to {maximum}")
            params["maximum"] = format_decimal(maximum or 0, locale=language)
        case FieldType.TEXT:
            sentence = N_("Up to {characters} characters")
            params["characters"] = MAX_TEXT
    return i18n.translated(sentence, language).format(**params)
