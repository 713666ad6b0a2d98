"""Column-wise validation of pushed reports.

Per-row model validation caps near 200k rows/s on our machines, so a report is checked one
*column* at a time: a column of counts is checked with one ``str.join`` and ``isdigit``, a
column of codes with one set difference, a column of weeks by parsing its few distinct
values. Every value is still checked. Only when a column fails do we walk it row by row, to
tell the agency exactly which rows are wrong and why.

A report states each cell once, and each person once: it may not state an area and an area
inside it (a province and its districts) for the same week and stratum, since both would
be summed into the province's released value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import cast

from schemas.columns import (
    CHECKERS,
    Column,
    ColumnInput,
    ErrorLog,
    ValidationContext,
)
from schemas.errors import InvalidInputError, RowError
from schemas.gazetteer import Gazetteer
from schemas.model import FieldType, ReportSchema
from schemas.periods import week_of

__all__ = [
    "Batch",
    "JsonColumns",
    "ReportShapeError",
    "ReportValidationError",
    "RowError",
    "ValidationContext",
    "from_csv_rows",
    "from_json_columns",
    "from_json_rows",
    "from_text_columns",
    "json_columns",
]


#: An error names at most this many unknown fields, each cut to this many characters: a
#: header of a million made-up names must not come back as a million names.
MAX_UNKNOWN_SHOWN = 10
MAX_NAME_SHOWN = 64


class ReportValidationError(InvalidInputError):
    """A report with bad rows; nothing of it may be stored."""

    def __init__(
        self, errors: Sequence[RowError], total: int, schema: ReportSchema | None = None
    ) -> None:
        self.errors = tuple(errors)
        self.total = total
        self.schema = schema  # whose labels name the fields in translated sentences
        shown = "; ".join(
            f"row {e.row}, {e.field}={e.value!r}: {e.reason}" for e in self.errors[:3]
        )
        more = f" (and {total - 3} more)" if total > 3 else ""
        super().__init__(f"{total} invalid value(s): {shown}{more}")


class ReportShapeError(InvalidInputError):
    """A report whose overall shape is wrong (columns, row objects), before any value is read."""


@dataclass(frozen=True)
class Batch:
    """A validated report: normalized columns in the schema's stored order."""

    schema: ReportSchema
    columns: Mapping[str, list[object]]
    rows: int
    generated_at: dt.datetime | None = None  # when the agency produced it, if it said
    gazetteer: Gazetteer | None = None  # the areas it was checked against: which ones overlap

    def content_sha256(self) -> str:
        """SHA-256 over the normalized columns: the same content as CSV or JSON hashes alike.

        Counts are hashed as little-endian int64 (``array`` packs them in C), text joined
        with a unit separator; the column name and a group separator frame each column.
        """
        digest = hashlib.sha256()
        for name in self.schema.stored_columns:
            column = self.columns[name]
            digest.update(name.encode() + b"\x1e")
            if self.schema.dimension_type(name) == FieldType.COUNT and None not in column:
                digest.update(array("q", cast(list[int], column)).tobytes())
            elif None not in column:
                digest.update("\x1f".join(cast(list[str], column)).encode())
            else:
                digest.update("\x1f".join("" if v is None else str(v) for v in column).encode())
            digest.update(b"\x1d")
        return digest.hexdigest()


def from_csv_rows(
    schema: ReportSchema,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    ctx: ValidationContext,
    *,
    lines: Sequence[int] | None = None,
    check_cells: bool = True,
) -> Batch:
    """Validate rows read by ``csv.reader`` (all values are text).

    ``lines[i]`` is the file line ``rows[i]`` starts on, the row number errors show; by
    default the header is line 1 and data rows follow it without gaps. A row with more or
    fewer values than the header is an error of its own (``ragged_row``); the others are
    still checked, so one bad row does not hide the rest.
    """
    _check_header(schema, header)
    numbers = list(lines) if lines is not None else list(range(2, len(rows) + 2))
    width = len(header)
    errors = ErrorLog(ctx.max_errors, numbers)
    if rows and set(map(len, rows)) != {width}:
        for i, row in enumerate(rows, 1):
            if len(row) != width:
                errors.add(
                    i, "*", f"{len(row)} values", "ragged_row", cells=len(row), expected=width
                )
        kept = [(r, line) for r, line in zip(rows, numbers, strict=True) if len(r) == width]
        rows, numbers = [r for r, _ in kept], [line for _, line in kept]
    errors.lines = numbers
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    if not rows and not errors.total:
        raise ReportShapeError.coded("csv_header_only")
    return _validate(
        schema,
        dict(zip(header, transposed, strict=True)),
        len(rows),
        errors,
        ctx,
        check_cells=check_cells,
    )


def from_text_columns(
    schema: ReportSchema,
    header: Sequence[str],
    columns: Sequence[Sequence[str]],
    rows: int,
    ctx: ValidationContext,
    *,
    lines: Sequence[int] | None = None,
    check_cells: bool = True,
) -> Batch:
    """Validate text columns of equal length ``rows`` (a CSV already split by column).

    Row numbers are as in ``from_csv_rows``: ``lines``, or the header as line 1.
    """
    _check_header(schema, header)
    if rows == 0:
        raise ReportShapeError.coded("csv_header_only")
    errors = ErrorLog(ctx.max_errors, lines if lines is not None else range(2, rows + 2))
    columns_by_name = dict(zip(header, columns, strict=True))
    return _validate(schema, columns_by_name, rows, errors, ctx, check_cells=check_cells)


def from_plain_csv_lines(
    schema: ReportSchema,
    header: Sequence[str],
    data: Sequence[str],
    ctx: ValidationContext,
    *,
    lines: Sequence[int] | None = None,
    check_cells: bool = True,
) -> Batch:
    """CSV data lines without quotes or carriage returns, split by column in C, not by row.

    Without quotes a comma always separates fields, so when every line has the header's
    number of commas, every n-th value of the flattened lines belongs to the same column;
    otherwise the rows are read one by one so each ragged row is listed.
    """
    width = len(header)
    if data and set(map(str.count, data, repeat(","))) != {width - 1}:
        rows = [line.split(",") for line in data]
        return from_csv_rows(schema, header, rows, ctx, lines=lines, check_cells=check_cells)
    flat = ",".join(data).split(",") if data else []
    columns = [flat[i::width] for i in range(width)]
    return from_text_columns(
        schema, header, columns, len(data), ctx, lines=lines, check_cells=check_cells
    )


@dataclass(frozen=True)
class JsonColumns:
    """Decoded JSON rows as columns: ``names`` the fields any row gave, and a column (None
    where a row gave no value) for each of the schema's fields."""

    names: frozenset[str]
    columns: dict[str, Column]
    rows: int


def json_columns(schema: ReportSchema, rows: Sequence[object]) -> JsonColumns:
    """The columns of decoded row objects; raises ``ReportShapeError`` unless each is one."""
    if rows and set(map(type, rows)) != {dict}:
        raise ReportShapeError.coded("rows_not_objects")
    dict_rows: Sequence[dict[str, object]] = rows  # type: ignore[assignment]
    columns: dict[str, Column] = {}
    for f in schema.fields:
        try:
            columns[f.name] = list(map(operator.itemgetter(f.name), dict_rows))
        except KeyError:
            columns[f.name] = [r.get(f.name) for r in dict_rows]
    return JsonColumns(frozenset(chain.from_iterable(dict_rows)), columns, len(rows))


def from_json_rows(
    schema: ReportSchema,
    rows: Sequence[object],
    ctx: ValidationContext,
    *,
    lines: Sequence[int] | None = None,
    check_cells: bool = True,
) -> Batch:
    """Validate a JSON array of row objects; values must have their JSON types (no "5" for 5).

    Row numbers are 1-based indexes in the array, or ``lines`` (a part of a longer report).
    ``check_cells=False`` leaves the checks that span rows (one statement per cell and per
    person) to the caller, who sees the whole report.
    """
    if not rows:
        raise ReportShapeError.coded("no_rows")
    return from_json_columns(
        schema, json_columns(schema, rows), ctx, lines=lines, check_cells=check_cells
    )


def from_json_columns(
    schema: ReportSchema,
    decoded: JsonColumns,
    ctx: ValidationContext,
    *,
    lines: Sequence[int] | None = None,
    check_cells: bool = True,
) -> Batch:
    """Validate rows already decoded into columns, as ``from_json_rows`` does."""
    if not decoded.rows:
        raise ReportShapeError.coded("no_rows")
    _check_header(schema, sorted(decoded.names))
    errors = ErrorLog(ctx.max_errors, lines)
    return _validate(
        schema, decoded.columns, decoded.rows, errors, ctx, from_text=False, check_cells=check_cells
    )


def _check_header(schema: ReportSchema, names: Sequence[str]) -> None:
    known = set(schema.field_by_name)
    if len(set(names)) != len(names):
        raise ReportShapeError.coded("duplicate_column")
    unknown = sorted(set(names) - known)
    if unknown:
        shown = ", ".join(repr(name[:MAX_NAME_SHOWN]) for name in unknown[:MAX_UNKNOWN_SHOWN])
        more = len(unknown) - MAX_UNKNOWN_SHOWN
        raise ReportShapeError.coded(
            "unknown_fields_more" if more > 0 else "unknown_fields",
            names=shown,
            schema=schema.id,
            fields=tuple(f.name for f in schema.fields),
            **({"more": more} if more > 0 else {}),
        )
    missing = [f.name for f in schema.fields if f.required and f.name not in names]
    if missing:
        raise ReportShapeError.coded("missing_fields", fields=tuple(missing), schema=schema.id)


def _validate(
    schema: ReportSchema,
    raw: Mapping[str, Column],
    n: int,
    errors: ErrorLog,
    ctx: ValidationContext,
    *,
    from_text: bool = True,
    check_cells: bool = True,
) -> Batch:
    """Check every column, then (when every value is valid) the cells; raise all errors."""
    known = errors.total  # ragged rows, found before
    out: dict[str, list[object]] = {}
    for f in schema.fields:
        column = raw.get(f.name)
        if column is None:
            out[f.name] = [None] * n
            continue
        measure = schema.measure_by_name.get(f.name)
        maximum = measure.maximum if measure is not None and measure.maximum else 0
        out[f.name] = CHECKERS[f.type](
            ColumnInput(f.name, column, f.required, from_text, ctx, errors, f.codelist, maximum)
        )
    if check_cells and errors.total == known:
        _check_unique_cells(schema, out, n, errors)
    if check_cells and errors.total == known:
        _check_nested_areas(schema, out, ctx.gazetteer, errors)
    if errors.total:
        raise ReportValidationError(errors.items, errors.total, schema)
    if schema.week_from:
        dates = cast(list[str], out[schema.week_from])
        weeks = {d: week_of(dt.date.fromisoformat(d), ctx.week_system) for d in set(dates)}
        out["week"] = list(map(weeks.__getitem__, dates))
    return Batch(schema=schema, columns=out, rows=n, gazetteer=ctx.gazetteer)


def _check_unique_cells(
    schema: ReportSchema, columns: Mapping[str, list[object]], n: int, errors: ErrorLog
) -> None:
    keys = list(zip(*(columns[k] for k in schema.cell_key), strict=True))
    if len(set(keys)) == n:
        return
    first: dict[tuple[object, ...], int] = {}
    for i, key in enumerate(keys, 1):
        if key in first:
            errors.add(
                i,
                "+".join(schema.cell_key),
                "/".join(map(str, key)),
                "duplicate_cell",
                first_row=errors.row(first[key]),
            )
        else:
            first[key] = i


def _check_nested_areas(
    schema: ReportSchema,
    columns: Mapping[str, list[object]],
    gazetteer: Gazetteer,
    errors: ErrorLog,
) -> None:
    """Refuse a row whose area lies inside another row's area for the same rest of the key.

    Most reports state one level: then no area of the report contains another, which one
    pass over the distinct areas shows, and no row is looked at.
    """
    area = schema.area_key
    if area is None:
        return
    codes = cast(list[str], columns[area])
    distinct = set(codes)
    containing = distinct.intersection(a for c in distinct for a in gazetteer.ancestors(c))
    if not containing:
        return
    rest = [k for k in schema.cell_key if k != area]
    others = list(zip(*(columns[k] for k in rest), strict=True)) if rest else [()] * len(codes)
    outer = {
        (code, *other): i
        for i, (code, other) in enumerate(zip(codes, others, strict=True), 1)
        if code in containing
    }
    for i, (code, other) in enumerate(zip(codes, others, strict=True), 1):
        for ancestor in gazetteer.ancestors(code):
            row = outer.get((ancestor, *other))
            if row is not None:
                errors.add(
                    i,
                    area,
                    code,
                    "nested_area",
                    ancestor=ancestor,
                    other_row=errors.row(row),
                    fields=tuple(rest),
                )
                break
