"""Checking one column of a report against its field type.

Each checker takes a whole column and returns it normalized, in one pass of C-level work
(``str.join``, set differences, ``map``); only when that fast check fails does ``walk`` go
value by value, so every bad value is reported with its row and reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from schemas.codelists import CODE_LISTS
from schemas.gazetteer import Gazetteer
from schemas.model import FieldType
from schemas.periods import InvalidWeekError, WeekSystem, parse_week

MAX_TEXT = 64
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: C0 and C1 controls, DEL and lone surrogates: PostgreSQL refuses NUL in text, SQLite would
#: store it, and none belongs in a case number; refused alike on both backends.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Column = Sequence[object]


@dataclass(frozen=True)
class RowError:
    """One bad value: ``row`` counts data rows from 1 (a CSV's header is not a row)."""

    row: int
    field: str
    value: str
    reason: str


@dataclass(frozen=True)
class ValidationContext:
    gazetteer: Gazetteer
    week_system: WeekSystem
    max_errors: int = 100


@dataclass
class ErrorLog:
    """Bad values found so far: the first ``limit`` kept, all counted."""

    limit: int
    items: list[RowError] = field(default_factory=list)
    total: int = 0

    def add(self, row: int, name: str, value: object, reason: str) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(RowError(row=row, field=name, value=str(value)[:80], reason=reason))


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


def walk(c: ColumnInput, convert: Callable[[object], object]) -> list[object]:
    """The slow path: convert value by value, recording each failure with its row."""
    out: list[object] = []
    for i, value in enumerate(c.values, 1):
        if value is None or value == "":
            if c.required:
                c.errors.add(i, c.name, "", "a value is required")
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except ValueError as exc:
            c.errors.add(i, c.name, value, str(exc))
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
            raise ValueError("not a whole number")
        number = int(text)
    elif type(value) is not int:
        raise ValueError(f"a count must be a JSON integer, not {type(value).__name__}")
    else:
        number = value
    if number < 0:
        raise ValueError("a count cannot be negative")
    if number > maximum:
        raise ValueError(
            f"more than {maximum:,}, the most one cell may state for this measure (the "
            "schema's maximum; it keeps every total exact)"
        )
    return number


def _coded(allowed: frozenset[str], what: str) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"must be text, not {type(value).__name__}")
        if value not in allowed:
            shown = ", ".join(sorted(allowed)[:12]) + (", ..." if len(allowed) > 12 else "")
            raise ValueError(f"not a {what}; allowed: {shown}")
        return value

    return convert


def _set_checked(c: ColumnInput, allowed: frozenset[str], what: str) -> list[object]:
    if c.values and set(map(type, c.values)) == {str} and set(c.values) <= allowed:
        return list(c.values)
    return walk(c, _coded(allowed, what))


def _area(c: ColumnInput) -> list[object]:
    return _set_checked(c, c.ctx.gazetteer.codes, "area code of this node's gazetteer")


def _code(c: ColumnInput) -> list[object]:
    codelist = CODE_LISTS[c.codelist or ""]
    return _set_checked(c, codelist.values(), f"code of the {codelist.name} list")


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
        except ValueError:
            return walk(c, convert)
    if all(k == v for k, v in parsed.items()):
        return list(c.values)
    return list(map(parsed.__getitem__, c.values))


def _week(c: ColumnInput) -> list[object]:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"a week must be text, not {type(value).__name__}")
        try:
            return parse_week(value, c.ctx.week_system)
        except InvalidWeekError as exc:
            raise ValueError(str(exc)) from None

    return _by_distinct(c, convert)


def _date(c: ColumnInput) -> list[object]:
    def convert(value: object) -> object:
        if not isinstance(value, str) or not _DATE.match(value):
            raise ValueError("a date is written YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("no such calendar date") from None

    return _by_distinct(c, convert)


def _text(c: ColumnInput) -> list[object]:
    if c.values and set(map(type, c.values)) == {str}:
        texts = cast(Sequence[str], c.values)
        if all(texts) and max(map(len, texts)) <= MAX_TEXT and not _CONTROL.search("".join(texts)):
            return list(texts)

    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"must be text, not {type(value).__name__}")
        if len(value) > MAX_TEXT:
            raise ValueError(f"longer than {MAX_TEXT} characters")
        control = _CONTROL.search(value)
        if control:
            raise ValueError(
                f"holds the control character U+{ord(control.group()):04X}; text is printable"
            )
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
