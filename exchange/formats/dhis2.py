"""A DHIS2 data value set, through a node's mapping, into one validated report batch.

Each data value is one measure of one cell: its organisation unit gives the area, its
period the epi week, and its data element, category option combo and attribute option combo
together give the measure and the coded dimensions (an age band and a sex, say). Values
that fall in the same cell become one row. Every identifier is looked up once per distinct
value, not once per data value, and the values are placed in their cells with ``dict`` and
``map`` (``exchange.formats.dhis2_values`` says why). Anything that cannot be placed is a
DHIS2 conflict with DHIS2's error code; one conflict and nothing of the set is stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import count, repeat
from operator import add, itemgetter, mul
from typing import Any, cast

from exchange.formats.dhis2_conflicts import ConflictLog
from exchange.formats.dhis2_mapping import (
    DEFAULT_COMBO_CODE,
    DEFAULT_COMBO_UID,
    DhisMapping,
    IdScheme,
    Target,
    dimension_names,
    week_field,
)
from exchange.formats.dhis2_periods import PeriodRefusal, place_period
from exchange.formats.dhis2_values import DataValues
from schemas.errors import RowError
from schemas.model import ReportSchema
from schemas.validation import Batch, ReportValidationError, ValidationContext, from_text_columns


@dataclass(frozen=True)
class IdSchemes:
    """Which property of the metadata names it: ``idScheme`` and its per-kind overrides."""

    data_element: IdScheme = "UID"
    org_unit: IdScheme = "UID"
    category_option_combo: IdScheme = "UID"
    other: IdScheme = "UID"  # data sets and attribute option combos


class ConflictsFoundError(Exception):
    """The set has conflicts; ``log`` lists them. Nothing of it may be stored."""

    def __init__(self, log: ConflictLog) -> None:
        self.log = log
        super().__init__("the data value set has conflicts")


class _Cells:
    """Where each data value went: its cell's key, the cells in row order, its measure."""

    def __init__(self, keys: list[str], ordered: dict[str, int], measures: list[str]) -> None:
        self.keys = keys
        self.ordered = ordered  # cell key -> any value index, in the batch's row order
        self.measures = measures

    def cells(self) -> list[int]:
        """The batch row of each data value (built when asked: most imports never do)."""
        row = dict(zip(self.ordered, count(), strict=False))
        return list(map(row.__getitem__, self.keys))


@dataclass(frozen=True)
class Converted:
    """The set as a validated batch, and where each data value went (for the counts)."""

    batch: Batch
    cells: _Cells

    @property
    def values(self) -> int:
        return len(self.cells.keys)


def convert(
    values: DataValues, mapping: DhisMapping, schemes: IdSchemes, ctx: ValidationContext
) -> Converted:
    """The validated batch of ``values``; raises ConflictsFoundError listing every conflict."""
    log = ConflictLog()
    elements = mapping.data_elements[schemes.data_element]
    units = mapping.org_units[schemes.org_unit]
    combos = mapping.category_option_combos[schemes.category_option_combo]
    attributes = mapping.attribute_option_combos[schemes.other]
    de = _identifiers(values.data_element, "dataElement", "E7610", elements, log)
    ou = _identifiers(values.org_unit, "orgUnit", "E7612", units, log)
    coc = _identifiers(
        _default(values.category_option_combo, schemes.category_option_combo),
        "categoryOptionCombo",
        "E7613",
        combos,
        log,
    )
    aoc = _identifiers(
        _default(values.attribute_option_combo, schemes.other),
        "attributeOptionCombo",
        "E7615",
        attributes,
        log,
    )
    schema = _schema(values, de, elements, mapping, schemes, log)
    pe = _text(values.period, "period", "E7611", log)
    weeks = _weeks(pe, ctx, schema, log)
    dims = _dimensions(de, coc, aoc, elements, combos, attributes, schema, log)
    vals = _values(values.value, de, elements, log)
    if True in values.deleted:
        indexes = [i for i, d in enumerate(values.deleted) if d is True]
        log.add(
            "E7618",
            "deleted",
            "true",
            "Data values marked `deleted: true` cannot be imported here: a node keeps every "
            "report and never deletes a count; send the corrected value (0) instead",
            indexes,
        )
    if log or schema is None:
        raise ConflictsFoundError(log)
    return _place(
        values.count, de, ou, pe, coc, aoc, vals, dims, weeks, units, elements, mapping, schema, ctx
    )


def _default(column: list[Any], scheme: IdScheme) -> list[Any]:
    """DHIS2's default combo where a value names none."""
    if None not in column and "" not in column:
        return column
    default = DEFAULT_COMBO_UID if scheme == "UID" else DEFAULT_COMBO_CODE
    fill = {None: default, "": default}
    return list(map(fill.get, column, column))


def _text(column: list[Any], prop: str, code: str, log: ConflictLog) -> list[Any]:
    """The column, each value text; a missing or non-text value is a conflict."""
    kinds = set(map(type, column))
    if kinds <= {str} and "" not in column:
        return column
    for i, v in enumerate(column):
        if v is None or v == "":
            log.add(code, prop, "", f"A data value has no {prop}; every data value needs one", [i])
        elif not isinstance(v, str):
            log.add(
                code,
                prop,
                repr(v)[:40],
                f"{prop} must be an identifier (text), not `{repr(v)[:40]}`",
                [i],
            )
    return [v if isinstance(v, str) and v else "" for v in column]


_NOT_FOUND = {
    "dataElement": "Data element not found in this node's DHIS2 mapping: `{0}`",
    "orgUnit": "Organisation unit not found in this node's DHIS2 mapping: `{0}`",
    "categoryOptionCombo": ("Category option combo not found in this node's DHIS2 mapping: `{0}`"),
    "attributeOptionCombo": (
        "Attribute option combo not found in this node's DHIS2 mapping: `{0}`"
    ),
}


def _identifiers(
    column: list[Any], prop: str, code: str, known: Mapping[str, object], log: ConflictLog
) -> list[Any]:
    try:
        distinct = set(column)
    except TypeError:  # an object or array where an identifier belongs
        distinct = {None}
    if distinct.difference(known):  # rare: unknown, missing or not text; else all known
        column = _text(column, prop, code, log)
        distinct = set(column)
    unknown = distinct.difference(known).difference(("",))
    if unknown:
        where: dict[str, list[int]] = {u: [] for u in unknown}
        for i, v in enumerate(column):
            if v in where:
                where[v].append(i)
        for value in sorted(unknown):
            hint = "; add it to dhis2.yaml or check the id scheme (idScheme=UID or CODE)"
            log.add(code, prop, value, _NOT_FOUND[prop].format(value) + hint, where[value])
    return column


def _schema(
    values: DataValues,
    de: list[str],
    elements: Mapping[str, Target],
    mapping: DhisMapping,
    schemes: IdSchemes,
    log: ConflictLog,
) -> ReportSchema | None:
    """The one schema the set reports: its data set's, else its first data element's."""
    chosen: ReportSchema | None = None
    data_set = values.data_set
    if data_set not in (None, ""):
        found = (
            mapping.data_sets[schemes.other].get(data_set) if isinstance(data_set, str) else None
        )
        if found is None:
            log.add(
                "E7600",
                "dataSet",
                str(data_set)[:60],
                f"Data set not found in this node's DHIS2 mapping: `{str(data_set)[:60]}`",
            )
        chosen = found
    known = [d for d in dict.fromkeys(de) if d in elements]
    if chosen is None and known:
        chosen = elements[known[0]].schema
    if chosen is None:
        return None
    for d in known:
        if elements[d].schema.id != chosen.id:
            indexes = [i for i, v in enumerate(de) if v == d]
            log.add(
                "E7633",
                "dataElement",
                d,
                f"Data element `{d}` maps to {elements[d].schema.id}, but this data value set "
                f"reports {chosen.id}; a data value set is one report of one schema, so send "
                "the data elements of each schema in a set of their own",
                indexes,
            )
    return chosen


def _weeks(
    pe: list[str], ctx: ValidationContext, schema: ReportSchema | None, log: ConflictLog
) -> dict[str, str]:
    weeks: dict[str, str] = {}
    schema_id = schema.id if schema is not None else "the schema"
    for period in set(pe).difference(("",)):
        placed = place_period(period, ctx.week_system, schema_id)
        if isinstance(placed, PeriodRefusal):
            indexes = [i for i, v in enumerate(pe) if v == period]
            code = "E7632" if placed.known_type else "E7611"
            log.add(code, "period", period, placed.reason, indexes)
        else:
            weeks[period] = placed
    return weeks


def _dimensions(
    de: list[str],
    coc: list[str],
    aoc: list[str],
    elements: Mapping[str, Target],
    combos: Mapping[str, Mapping[str, str]],
    attributes: Mapping[str, Mapping[str, str]],
    schema: ReportSchema | None,
    log: ConflictLog,
) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """The coded dimensions of each distinct (data element, COC, AOC), in cell-key order."""
    out: dict[tuple[str, str, str], tuple[str, ...]] = {}
    if schema is None:
        return out
    names = dimension_names(schema)
    for triple in set(zip(de, coc, aoc, strict=True)):
        d, c, a = triple
        if d not in elements or c not in combos or a not in attributes:
            continue
        merged: dict[str, str] = {}
        clash: list[str] = []
        for source in (elements[d].dimensions, combos[c], attributes[a]):
            for name, value in source.items():
                if merged.get(name, value) != value:
                    clash.append(f"{name} is both {merged[name]} and {value}")
                merged[name] = value
        missing = [n for n in names if n not in merged]
        if clash or missing:
            problem = "; ".join(clash) or f"no {', '.join(missing)} is given"
            indexes = [i for i, t in enumerate(zip(de, coc, aoc, strict=True)) if t == triple]
            log.add(
                "E7634",
                "categoryOptionCombo",
                f"{c}/{a}",
                f"Category option combo `{c}` with attribute option combo `{a}` does not "
                f"disaggregate data element `{d}` as {schema.id} needs: {problem} (map "
                "them in dhis2.yaml)",
                indexes,
            )
            continue
        out[triple] = tuple(merged[n] for n in names)
    return out


def _values(
    column: list[Any], de: list[str], elements: Mapping[str, Target], log: ConflictLog
) -> list[str]:
    """The values as digit strings; anything else is a conflict naming the value."""
    maxima = {d: t.schema.measure_by_name[t.measure].maximum or 0 for d, t in elements.items()}
    smallest = min(maxima.values(), default=0)
    if set(map(type, column)) <= {str} and "" not in column:
        joined = "".join(column)
        short = not column or max(map(len, column)) < len(str(smallest))
        if joined.isdigit() and joined.isascii() and short:
            return column
    out: list[str] = []
    for i, v in enumerate(column):
        d = de[i]
        text = str(v) if type(v) is int else v
        if text is None or text == "":
            log.add(
                "E7618",
                "value",
                d,
                f"Data value not specified for data element: `{d}` (data value {i})",
                [i],
            )
            out.append("0")
            continue
        if not isinstance(text, str) or not (text.isdigit() and text.isascii()):
            shown = repr(v)[:40] if not isinstance(v, str) else v[:40]
            log.add(
                "E7619",
                "value",
                shown,
                f"Value `{shown}` of data element `{d}` is not a whole number of 0 or more; "
                "this node stores counts",
                [i],
            )
            out.append("0")
            continue
        maximum = maxima.get(d)
        if maximum and int(text) > maximum:
            log.add(
                "E7619",
                "value",
                text[:40],
                f"Value `{text[:40]}` of data element `{d}` is more than {maximum:,}, the most "
                f"one cell of {elements[d].schema.id} may state for {elements[d].measure}",
                [i],
            )
        out.append(text)
    return out


def _place(
    n: int,
    de: list[str],
    ou: list[str],
    pe: list[str],
    coc: list[str],
    aoc: list[str],
    vals: list[str],
    dims: Mapping[tuple[str, str, str], tuple[str, ...]],
    weeks: Mapping[str, str],
    units: Mapping[str, str],
    elements: Mapping[str, Target],
    mapping: DhisMapping,
    schema: ReportSchema,
    ctx: ValidationContext,
) -> Converted:
    """Group the values into cells (rows) and validate them as a report batch.

    A value's cell is named by one string (its org unit, period, combos and the data
    element's fixed dimensions, joined): a string caches its hash, so the dictionaries
    that group 400,000 values hash each key once; tuples would be hashed at every lookup.
    """
    fixed: dict[frozenset[tuple[str, str]], str] = {}
    group_of = {
        d: fixed.setdefault(frozenset(t.dimensions.items()), f"g{len(fixed)}")
        for d, t in elements.items()
    }
    groups = list(map(group_of.__getitem__, de))
    keys = list(map(_SEP.join, zip(ou, pe, coc, aoc, groups, strict=True)))
    # Each cell, in order of first appearance, with the index of one of its values: the
    # cell's org unit, period and combos are that value's, read with C-level ``map``.
    some_value = dict(zip(keys, count(), strict=False))
    rows = len(some_value)
    measure_of = {d: t.measure for d, t in elements.items()}
    measures = list(map(measure_of.__getitem__, de))
    converted = _Cells(keys, some_value, measures)
    # Value v is measure k of row r: it goes to slot r * width + k, an int (cheap to hash,
    # and read back in order with a range): no string per value, no masks per measure.
    width = len(schema.measures)
    position = {m.name: k for k, m in enumerate(schema.measures)}
    slot_offset = {d: position[t.measure] for d, t in elements.items()}
    slots = list(
        map(add, map(mul, converted.cells(), repeat(width)), map(slot_offset.__getitem__, de))
    )
    log = ConflictLog()
    if len(set(slots)) != n:
        _duplicates(converted.cells(), measures, de, log)
        raise ConflictsFoundError(log)
    refuse = mapping.rule(schema.id).absent_values == "refuse"
    flat: list[str | None] = [None if refuse else "0"] * (rows * width)
    deque(map(flat.__setitem__, slots, vals), maxlen=0)  # a scatter, in C
    chosen = list(some_value.values())
    cell_ou, cell_pe, cell_coc, cell_aoc, cell_group = (
        list(map(column.__getitem__, chosen)) for column in (ou, pe, coc, aoc, groups)
    )
    areas = list(map(units.__getitem__, cell_ou))
    dims_of = {(g, c, a): dims[(d, c, a)] for d, c, a in dims for g in (group_of[d],)}
    cell_dims = list(map(dims_of.__getitem__, zip(cell_group, cell_coc, cell_aoc, strict=True)))
    columns: dict[str, Sequence[str | None]] = {
        schema.area_key or "area": areas,
        week_field(schema): list(map(weeks.__getitem__, cell_pe)),
    }
    names = dimension_names(schema)
    for j, name in enumerate(names):
        columns[name] = list(map(itemgetter(j), cell_dims))
    for k, m in enumerate(schema.measures):
        stated = flat[k::width]
        if refuse and None in stated:
            _absent(stated, m.name, converted.cells(), schema, log)
        columns[m.name] = stated
    if log:
        raise ConflictsFoundError(log)
    header = [f.name for f in schema.fields]
    # No None is left: a refused absence raised above, so every value is text here.
    text_columns = cast(list[Sequence[str]], [columns[h] for h in header])
    check_cells = not _one_to_one(cell_ou, units, dims_of, ctx)
    try:
        batch = from_text_columns(
            schema, header, text_columns, rows, ctx, lines=range(rows), check_cells=check_cells
        )
    except ReportValidationError as exc:
        for error in exc.errors:
            _row_conflict(error, converted.cells(), measures, log)
        raise ConflictsFoundError(log) from None
    return Converted(batch=batch, cells=converted)


_SEP = "\x1f"


def _one_to_one(
    cell_ou: Sequence[str],
    units: Mapping[str, str],
    dims_of: Mapping[tuple[str, str, str], tuple[str, ...]],
    ctx: ValidationContext,
) -> bool:
    """Whether distinct cells of the set are distinct, non-overlapping cells of the schema:
    no two org units (or combos) of the set map to one area (or one set of codes), and no
    area of the set lies inside another. Then the batch's own check of cells, which zips
    every row, has nothing to find; else it runs and names the rows."""
    used_units = set(cell_ou)
    used_areas = {units[u] for u in used_units}
    if len(used_areas) != len(used_units):
        return False
    if len(set(dims_of.values())) != len(dims_of):  # every combo used is in dims_of
        return False
    return not any(a in used_areas for code in used_areas for a in ctx.gazetteer.ancestors(code))


def _duplicates(cells: list[int], measures: list[str], de: list[str], log: ConflictLog) -> None:
    first: dict[tuple[int, str], int] = {}
    for i, key in enumerate(zip(cells, measures, strict=True)):
        if key in first:
            log.add(
                "E7619",
                "value",
                de[i],
                f"Data value {i} (data element `{de[i]}`) states {key[1]} for the same cell as "
                f"data value {first[key]}; a data value set states each value once",
                [first[key], i],
            )
        else:
            first[key] = i


def _absent(
    column: list[str | None],
    measure: str,
    cells: list[int],
    schema: ReportSchema,
    log: ConflictLog,
) -> None:
    for row, value in enumerate(column):
        if value is None:
            indexes = [i for i, c in enumerate(cells) if c == row]
            log.add(
                "E7618",
                "value",
                f"{measure}@{row}",
                f"The cell of data values {indexes[:5]} states no {measure}; dhis2.yaml says "
                f"absent values of {schema.id} are refused, so send every measure of a cell",
                indexes,
            )


_ROW_CODES = {"area": ("E7612", "orgUnit")}


def _row_conflict(error: RowError, cells: list[int], measures: list[str], log: ConflictLog) -> None:
    """A row error of the batch, as a conflict on the data values of that cell."""
    indexes = [
        i
        for i, (c, m) in enumerate(zip(cells, measures, strict=True))
        if c == error.row and (m == error.field or error.field not in measures)
    ]
    code, prop = _ROW_CODES.get(error.field, ("E7619", "value"))
    log.add(
        code,
        prop,
        error.value,
        f"Data values {indexes[:5]}: {error.field} `{error.value}`: {error.reason}",
        indexes,
    )
