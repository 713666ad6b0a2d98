"""Reading an HXL-tagged spreadsheet: columns are found by their hashtags, not their headers.

Humanitarian partners keep situation reports as spreadsheets with a row of HXL hashtags
(``#affected``, ``#adm2+code``) under a human header row. Such a file is pushed as it is:
the rows above the hashtag row are ignored, each column is matched to the schema field
that declares the same hashtag (HXL hashtags and attributes are case-insensitive and the
attributes unordered), and columns the schema has no field for (names, organisations,
disaggregations) are ignored, as HXL tools do. A required field without its column is
named with the hashtag that would supply it.

The area is the one exception to exact matching: sheets often carry a P-code column per
admin level (``#adm1+code``, ``#adm2+code``), and a row's area is the finest code it
states, so a sheet that mixes province rows and district rows reads as it is meant.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.model import FieldType, ReportSchema
from schemas.validation import ReportShapeError

#: libhxl looks this far down for the hashtag row; so do we.
MAX_HEADER_ROWS = 25

_TAG = re.compile(r"^\s*#\s*([a-z][a-z0-9_]*)((?:\s*\+\s*[a-z][a-z0-9_]*)*)\s*$", re.IGNORECASE)
_ADMIN = re.compile(r"^adm([1-5])$")

Tag = tuple[str, frozenset[str]]


def parse_tag(text: str) -> Tag | None:
    """``#Affected +Displaced`` -> ``("affected", {"displaced"})``; None if not a hashtag."""
    match = _TAG.match(text)
    if match is None:
        return None
    attributes = (a.strip() for a in match[2].lower().split("+")[1:])
    return match[1].lower(), frozenset(attributes)


def tagged(text: str) -> bool:
    """Whether a CSV text may be HXL-tagged: a hashtag starts a cell of one of its first
    lines. Cheap, and only a hint: ``tag_row`` decides on the parsed rows."""
    head = text[:65536].split("\n")[:MAX_HEADER_ROWS]
    return any(line.lstrip('"').startswith("#") or ",#" in line or ',"#' in line for line in head)


def head_tag_row(lines: Sequence[str]) -> int | None:
    """The hashtag row's index among a file's first lines (not yet parsed as CSV); None when
    they hold none, or cannot be read as CSV (the reader that follows says why)."""
    head = list(lines[:MAX_HEADER_ROWS])
    if not tagged("".join(head)):
        return None
    try:
        return tag_row(list(csv.reader(head)))
    except csv.Error:
        return None


def tag_row(rows: Sequence[Sequence[str]]) -> int | None:
    """The index of the hashtag row among the first rows: the first whose non-empty cells
    are all hashtags, with at least one. None: the file is not HXL-tagged."""
    for index, row in enumerate(rows[:MAX_HEADER_ROWS]):
        cells = [c for c in row if c.strip()]
        if cells and all(parse_tag(c) is not None for c in cells):
            return index
    return None


@dataclass(frozen=True)
class TaggedColumns:
    """Which column supplies each field: ``fields[name]`` its index; the area's candidate
    columns, finest admin level first."""

    fields: dict[str, int]
    area: str | None
    area_columns: tuple[int, ...]

    @property
    def header(self) -> list[str]:
        """The field names, in the order ``row`` returns values."""
        return [*self.fields, *([self.area] if self.area else [])]

    def row(self, cells: Sequence[str]) -> list[str]:
        """One data row's values in ``header`` order (a short row reads as empty cells)."""
        width = len(cells)
        values = [cells[i] if i < width else "" for i in self.fields.values()]
        if self.area is not None:
            stated = (cells[i] for i in self.area_columns if i < width and cells[i].strip())
            values.append(next(stated, ""))
        return values


def _admin_level(tag: Tag) -> int | None:
    """0 for ``#country+code``, N for ``#admN+code``; None for any other hashtag."""
    name, attributes = tag
    if attributes != {"code"}:
        return None
    if name == "country":
        return 0
    match = _ADMIN.match(name)
    return int(match[1]) if match else None


def columns_for(schema: ReportSchema, tags: Sequence[str]) -> TaggedColumns:
    """Match a hashtag row to ``schema``'s fields, or say what is missing or repeated."""
    declared = {
        parsed: f.name
        for f in schema.fields
        if f.hxl and f.type != FieldType.AREA and (parsed := parse_tag(f.hxl))
    }
    area = next((f for f in schema.fields if f.type == FieldType.AREA), None)
    if not declared and (area is None or not area.hxl):
        raise ReportShapeError.coded("hxl_not_declared", schema=schema.id)
    fields: dict[str, int] = {}
    levels: dict[int, int] = {}
    for index, text in enumerate(tags):
        parsed = parse_tag(text)
        if parsed is None:
            continue
        name = declared.get(parsed)
        level = _admin_level(parsed) if area is not None else None
        if name is None and level is None:
            continue
        if (name is not None and name in fields) or (level is not None and level in levels):
            raise ReportShapeError.coded("hxl_tag_repeated", tag=text.strip())
        if name is not None:
            fields[name] = index
        elif level is not None:
            levels[level] = index
    missing = [
        f
        for f in schema.fields
        if f.required and f.hxl and f.type != FieldType.AREA and f.name not in fields
    ]
    if area is not None and not levels:
        missing.insert(0, area)
    if missing:
        raise ReportShapeError.coded(
            "hxl_missing_tags",
            schema=schema.id,
            tags=tuple(f"{f.name} ({f.hxl})" for f in missing),
        )
    area_columns = tuple(levels[level] for level in sorted(levels, reverse=True))
    return TaggedColumns(fields, area.name if area and levels else None, area_columns)
