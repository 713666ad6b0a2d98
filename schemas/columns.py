"""Checking one column of a report against its field type.

Each checker takes a whole column and returns it normalized, in one pass of C-level work
(``str.join``, set differences, ``map``); only when that fast check fails does ``walk`` go
value by value, so every bad value is reported with its row and reason.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from schemas.codelists import CODE_LISTS
from schemas.errors import Param, RowError
from schemas.gazetteer import Gazetteer
from schemas.model import FieldType
from schemas.periods import (
    FIRST_YEAR,
    LAST_YEAR,
    InvalidWeekError,
    WeekSystem,
    parse_week,
    weeks_in_year,
)

MAX_TEXT = 64
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$")  # as ``schemas.periods`` reads it: why one failed
#: C0 and C1 controls, DEL and lone surrogates: PostgreSQL refuses NUL in text, SQLite would
#: store it, and none belongs in a case number; refused alike on both backends.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Column = Sequence[object]


@dataclass(frozen=True)
class ValidationContext:
    gazetteer: Gazetteer
    week_system: WeekSystem
    max_errors: int = 100


class ErrorLog:
    """Bad values found so far: all counted, the first ``limit`` by (row, field) kept.

    A bounded heap keeps the smallest keys, so the cap applies after sorting without holding
    every error of a report that is wrong on every row. Each check reports a (row, field) at
    most once; a repeat of an error the log holds is dropped, not counted again. ``lines``
    maps a data row's index (from 1) to the row number the agency sees: its CSV line.
    """

    def __init__(self, limit: int, lines: Sequence[int] | None = None) -> None:
        self.limit = limit
        self.lines = lines
        self.total = 0
        self._heap: list[_Latest] = []  # the kept errors, the latest (row, field) on top
        self._kept: set[tuple[int, str, str]] = set()

    def row(self, index: int) -> int:
        """The row number shown for data row ``index`` (counted from 1)."""
        return index if self.lines is None else self.lines[index - 1]

    def add(self, index: int, name: str, value: object, code: str, **params: Param) -> None:
        row = self.row(index)
        key = (row, name, code)
        if key in self._kept:
            return
        self.total += 1
        full = len(self._heap) >= self.limit
        if full and not (self._heap and key < self._heap[0].key):
            return  # later than every kept error: counted only, no object built
        entry = _Latest(RowError(row, name, str(value)[:80], code, params))
        if full:
            dropped = heapq.heapreplace(self._heap, entry).key
            self._kept.discard(dropped)
        else:
            heapq.heappush(self._heap, entry)
        self._kept.add(key)

    @property
    def items(self) -> list[RowError]:
        """The kept errors sorted by (row, field)."""
        return sorted((e.error for e in self._heap), key=lambda e: (e.row, e.field, e.code))


class _Latest:
    """A heap entry ordered backwards, so ``heapq``'s smallest is the latest error."""

    __slots__ = ("error", "key")

    def __init__(self, error: RowError) -> None:
        self.error = error
        self.key = (error.row, error.field, error.code)

    def __lt__(self, other: _Latest) -> bool:
        return other.key < self.key


@dataclass(frozen=True)
class ColumnInput:
    """One column to check, with what its checker needs to know about the field."""

    name: str
    values: Column
    required: bool
    from_text: bool  # CSV text (every value a string) or typed JSON values
    ctx: ValidationContext
    errors: ErrorLog
    codelist: str | None = None
    maximum: int = 0  # counts: the measure's declared maximum (``Measure.maximum``)


class BadValue(ValueError):
    """Why one value is wrong: a code of ``ROW_MESSAGES`` and its sentence's parameters."""

    def __init__(self, code: str, **params: Param) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


_JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number", list: "array"}


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type: what the agency wrote, not Python's word."""
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), "object")


def _week_error(text: str, system: WeekSystem) -> BadValue:
    match = _WEEK.match(text)
    if match is None:
        return BadValue("not_a_week")
    year, week = int(match[1]), int(match[2])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return BadValue("week_year_out_of_range", year=str(year))
    return BadValue("no_such_week", year=str(year), weeks=weeks_in_year(year, system), week=week)


def walk(c: ColumnInput, convert: Callable[[object], object]) -> list[object]:
    """The slow path: convert value by value, recording each failure with its row."""
    out: list[object] = []
    for i, value in enumerate(c.values, 1):
        if value is None or value == "":
            if c.required:
                c.errors.add(i, c.name, "", "value_required")
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except BadValue as bad:
            c.errors.add(i, c.name, value, bad.code, **bad.params)
            out.append(None)
    return out


def _count(c: ColumnInput) -> list[object]:
    column = c.values
    if not column:
        return []
    if c.from_text:
        texts = cast(Sequence[str], column)
        joined = "".join(texts)
        if all(texts) and joined.isascii() and joined.isdigit() and max(map(len, texts)) <= 18:
            numbers = list(map(int, texts))
            if max(numbers) <= c.maximum:
                return cast(list[object], numbers)
    elif set(map(type, column)) == {int}:
        numbers = cast(list[int], column)
        if min(numbers) >= 0 and max(numbers) <= c.maximum:
            return list(numbers)
    return walk(c, lambda v: _one_count(v, c.from_text, c.maximum))


def _one_count(value: object, from_text: bool, maximum: int) -> int:
    if from_text:
        text = str(value)
        if not (text.isascii() and text.lstrip("-").isdigit()):
            raise BadValue("not_an_integer")
        number = int(text)
    elif type(value) is not int:
        raise BadValue("not_a_json_integer", json_type=json_type(value))
    else:
        number = value
    if number < 0:
        raise BadValue("negative_count")
    if number > maximum:
        raise BadValue("above_maximum", maximum=maximum)
    return number


def _coded(allowed: frozenset[str], code: str) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise BadValue("not_text", json_type=json_type(value))
        if value not in allowed:
            shown = ", ".join(sorted(allowed)[:12]) + (", ..." if len(allowed) > 12 else "")
            raise BadValue(code, allowed=shown)
        return value

    return convert


def _set_checked(c: ColumnInput, allowed: frozenset[str], code: str) -> list[object]:
    if c.values and set(map(type, c.values)) == {str} and set(c.values) <= allowed:
        return list(c.values)
    return walk(c, _coded(allowed, code))


def _area(c: ColumnInput) -> list[object]:
    return _set_checked(c, c.ctx.gazetteer.codes, "unknown_area")


def _code(c: ColumnInput) -> list[object]:
    codelist = CODE_LISTS[c.codelist or ""]
    return _set_checked(c, codelist.values(), "not_in_codelist")


def _by_distinct(c: ColumnInput, convert: Callable[[object], object]) -> list[object]:
    """Parse each distinct value once; a report repeats a few weeks or dates many times."""
    try:
        distinct = set(c.values)
    except TypeError:  # an unhashable JSON value (array, object)
        return walk(c, convert)
    parsed: dict[object, object] = {}
    for value in distinct:
        if value is None or value == "":
            return walk(c, convert)
        try:
            parsed[value] = convert(value)
        except BadValue:
            return walk(c, convert)
    if all(k == v for k, v in parsed.items()):
        return list(c.values)
    return list(map(parsed.__getitem__, c.values))


def _week(c: ColumnInput) -> list[object]:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise BadValue("not_text", json_type=json_type(value))
        try:
            return parse_week(value, c.ctx.week_system)
        except InvalidWeekError:
            raise _week_error(value, c.ctx.week_system) from None

    return _by_distinct(c, convert)


def _date(c: ColumnInput) -> list[object]:
    def convert(value: object) -> object:
        if not isinstance(value, str) or not _DATE.match(value):
            raise BadValue("not_a_date")
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise BadValue("no_such_date") from None

    return _by_distinct(c, convert)


def _text(c: ColumnInput) -> list[object]:
    if c.values and set(map(type, c.values)) == {str}:
        texts = cast(Sequence[str], c.values)
        if all(texts) and max(map(len, texts)) <= MAX_TEXT and not _CONTROL.search("".join(texts)):
            return list(texts)

    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise BadValue("not_text", json_type=json_type(value))
        if len(value) > MAX_TEXT:
            raise BadValue("text_too_long", limit=MAX_TEXT)
        control = _CONTROL.search(value)
        if control:
            raise BadValue("control_character", character=f"U+{ord(control.group()):04X}")
        return value

    return walk(c, convert)


CHECKERS: dict[FieldType, Callable[[ColumnInput], list[object]]] = {
    FieldType.COUNT: _count,
    FieldType.AREA: _area,
    FieldType.CODE: _code,
    FieldType.WEEK: _week,
    FieldType.DATE: _date,
    FieldType.TEXT: _text,
}
