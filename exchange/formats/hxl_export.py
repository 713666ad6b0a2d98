"""A release as HXL-tagged CSV: what humanitarian partners load into their own tools.

Row 1 is for people, row 2 holds the hashtags tools read, then one row per cell. Dimensions
and measures carry the tags the schema declares, with the area's hashtag set to the level
actually released (``#adm2+code`` for districts, ``#country+code`` for a national total).

What is not a count of people goes under ``#meta``, never under a measure's own hashtag: HXL
tools match tags by prefix, so an accuracy column tagged ``#affected+cases+accuracy`` would be
summed with the cases. A suppressed value is an empty field with its flag set, never zero.
Provenance (provider, release, ε, confidence) repeats on every row: an HXL table is flat,
and a row copied into another sheet keeps where it came from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from schemas.model import FieldType, ReportSchema

#: Hashtags of the admin levels, country first (HXL core: #country, #adm1 to #adm5).
AREA_HASHTAGS = ("#country", "#adm1", "#adm2", "#adm3", "#adm4", "#adm5")


def _grains(query: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in query.get("group_by", []):
        name, _, grain = str(item).partition(":")
        out[name] = grain
    return out


def _area_tag(declared: str, grain: str) -> str:
    """``#adm1+code`` declared, ``adm2`` released -> ``#adm2+code``."""
    _hashtag, *attributes = declared.split("+")
    level = grain.removeprefix("adm")
    if not level.isdigit() or int(level) >= len(AREA_HASHTAGS):
        return declared
    return "+".join([AREA_HASHTAGS[int(level)], *(attributes or ["code"])])


def dimension_tag(schema: ReportSchema | None, dimension: str, grain: str) -> str:
    """The hashtag of a released dimension at its released granularity."""
    field = schema.field_by_name.get(dimension) if schema else None
    declared = field.hxl if field and field.hxl else None
    if dimension == "area" or (field is not None and field.type == FieldType.AREA):
        return _area_tag(declared or "#adm1+code", grain)
    if dimension == "week" and grain == "month":
        return "#date+month"
    if dimension == "week":
        return declared or "#date+week"
    return declared or f"#group+{dimension}"


def measure_tag(schema: ReportSchema | None, measure: str) -> str:
    known = schema.measure_by_name.get(measure) if schema else None
    return known.hxl if known and known.hxl else f"#indicator+num+{measure}"


def _label(schema: ReportSchema | None, name: str) -> str:
    if schema is not None and name in schema.measure_by_name:
        return schema.measure_by_name[name].label.en
    field = schema.field_by_name.get(name) if schema else None
    return field.label.en if field else name


PROVENANCE = (
    ("Provider node", "#org+provider+code"),
    ("Provider name", "#org+provider+name"),
    ("Release", "#meta+release+id"),
    ("Epsilon (ε) spent", "#meta+epsilon+num"),
    ("Confidence of the accuracy", "#meta+confidence+num"),
    ("Released at", "#date+released"),
)


def release_hxl(
    document: dict[str, Any],
    *,
    schema: ReportSchema | None = None,
    area_names: Mapping[str, str] | None = None,
) -> str:
    """The release ``document`` (``{"provider", "release"}``) as HXL-tagged CSV text.

    ``area_names`` (the provider's gazetteer, when this node is the provider) adds a name
    column beside the area codes.
    """
    release = document["release"]
    provider = document.get("provider", {})
    dims = [str(d) for d in release.get("dimensions", [])]
    measures = [str(m) for m in release.get("measures", [])]
    grains = _grains(release.get("query", {}))
    confidence = release.get("confidence", 0.95)
    header: list[str] = []
    tags: list[str] = []
    for d in dims:
        tag = dimension_tag(schema, d, grains.get(d, ""))
        header.append(_label(schema, d))
        tags.append(tag)
        if d == "area" and area_names is not None:
            header.append(f"{_label(schema, d)} name")
            tags.append(tag.split("+")[0] + "+name")
    for m in measures:
        header += [
            _label(schema, m),
            f"{_label(schema, m)}: ± at {confidence:.0%}",
            f"{_label(schema, m)}: suppressed",
        ]
        tags += [measure_tag(schema, m), f"#meta+accuracy+num+{m}", f"#meta+suppressed+{m}"]
    header += [text for text, _ in PROVENANCE]
    tags += [tag for _, tag in PROVENANCE]
    provenance = [
        provider.get("id", release.get("node_id", "")),
        provider.get("name", ""),
        release.get("release_id", ""),
        release.get("epsilon_spent", ""),
        confidence,
        release.get("created_at", ""),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerow(tags)
    for cell in release.get("cells", []):
        row: list[Any] = []
        for d in dims:
            row.append(cell[d])
            if d == "area" and area_names is not None:
                row.append(area_names.get(str(cell[d]), ""))
        for m in measures:
            value = cell[m]
            suppressed = bool(value.get("suppressed")) or value.get("value") is None
            row += [
                "" if suppressed else value["value"],
                value.get("accuracy", ""),
                "true" if suppressed else "false",
            ]
        writer.writerow(row + provenance)
    return out.getvalue()
