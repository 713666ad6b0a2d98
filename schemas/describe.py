"""What a schema looks like to a person or a program: labels in one language, and JSON Schema.

The JSON Schema describes one row of a JSON push; the node's gazetteer fills the area enum,
so a client can validate locally against exactly what this node accepts.
"""

from __future__ import annotations

from typing import Any

from schemas.codelists import CODE_LISTS
from schemas.columns import MAX_TEXT
from schemas.gazetteer import Gazetteer
from schemas.labels import Language
from schemas.model import FieldType, ReportField, ReportSchema
from schemas.standard import WEEK

_MAX_AREA_ENUM = 5000


def _field_json_schema(
    field: ReportField, gazetteer: Gazetteer, maximum: int | None
) -> dict[str, Any]:
    base: dict[str, Any]
    match field.type:
        case FieldType.COUNT:
            base = {"type": "integer", "minimum": 0, "maximum": maximum}
        case FieldType.WEEK:
            base = {"type": "string", "pattern": r"^\d{4}-?W\d{1,2}$"}
        case FieldType.DATE:
            base = {"type": "string", "format": "date"}
        case FieldType.CODE:
            base = {"type": "string", "enum": list(CODE_LISTS[field.codelist or ""].ordered())}
        case FieldType.AREA:
            codes = sorted(gazetteer.codes)
            base = {"type": "string"}
            if len(codes) <= _MAX_AREA_ENUM:
                base["enum"] = codes
        case FieldType.TEXT:
            base = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
    base["title"] = field.label.en
    base["description"] = field.description.en
    return base


def _maximum(schema: ReportSchema, name: str) -> int | None:
    measure = schema.measure_by_name.get(name)
    return None if measure is None else measure.maximum


def row_json_schema(schema: ReportSchema, gazetteer: Gazetteer) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{schema.id} row",
        "type": "object",
        "properties": {
            f.name: _field_json_schema(f, gazetteer, _maximum(schema, f.name))
            for f in schema.fields
        },
        "required": [f.name for f in schema.fields if f.required],
        "additionalProperties": False,
    }


def describe(schema: ReportSchema, language: Language, gazetteer: Gazetteer) -> dict[str, Any]:
    """Everything a data manager needs to prepare a report, in the language asked for."""
    dimensions = []
    for name in schema.dimensions:
        field = schema.field_by_name.get(name)
        kind = schema.dimension_type(name)
        entry: dict[str, Any] = {"name": name, "type": kind.value}
        if field is not None:
            entry["label"] = field.label.get(language)
            entry["description"] = field.description.get(language)
            entry["hxl"] = field.hxl
        else:
            entry["label"] = WEEK.label.get(language)
            entry["description"] = schema.field_by_name[schema.week_from or ""].description.get(
                language
            )
            entry["hxl"] = "#date+week"
        if field is not None and field.codelist:
            codelist = CODE_LISTS[field.codelist]
            entry["codes"] = [
                {"code": c.code, "label": c.label.get(language)} for c in codelist.codes
            ]
        if kind == FieldType.AREA:
            entry["levels"] = gazetteer.max_level
        dimensions.append(entry)
    return {
        "id": schema.id,
        "name": schema.name,
        "version": schema.version,
        "kind": schema.kind.value,
        "language": language,
        "label": schema.label.get(language),
        "description": schema.description.get(language),
        "fields": [
            {
                "name": f.name,
                "type": f.type.value,
                "required": f.required,
                "label": f.label.get(language),
                "description": f.description.get(language),
            }
            for f in schema.fields
        ],
        "dimensions": dimensions,
        "measures": [
            {
                "name": m.name,
                "label": m.label.get(language),
                "description": m.description.get(language),
                "unit": m.unit,
                "kind": m.kind.value,
                "contribution_bound": m.contribution_bound,
                "maximum": m.maximum,
                "hxl": m.hxl,
            }
            for m in schema.measures
        ],
        "json_schema": row_json_schema(schema, gazetteer),
    }
