"""The report schema model: fields, dimensions, measures, and ``name@version`` identity.

A schema is immutable once published; a change is a new version. Every schema says, for each
measure, its **contribution bound**: the most one person can add to one cell. That number is
the sensitivity the privacy layer calibrates noise to, so it lives with the data definition.
Every measure of an aggregate schema also declares its **maximum**: the most one cell may
state. Pushes above it are refused, which is what keeps every sum of stored cells inside
``int64`` (``ReportSchema.largest_sum`` makes the argument, and each schema checks it).
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.codelists import CODE_LISTS
from schemas.errors import InvalidInputError
from schemas.gazetteer import MAX_AREAS
from schemas.labels import Label
from schemas.periods import MAX_WEEKS

SUM_LIMIT = 2**62  # the largest exact sum allowed: half of int64, the other half is for noise


class FieldType(StrEnum):
    AREA = "area"  # a code of the node's gazetteer
    WEEK = "week"  # an epi week, YYYY-Www
    CODE = "code"  # a code of a public code list
    DATE = "date"  # an ISO 8601 calendar date
    COUNT = "count"  # a non-negative integer
    TEXT = "text"  # a short opaque identifier (never released)


class MeasureKind(StrEnum):
    FLOW = "flow"  # events in a period: may be summed over time
    STOCK = "stock"  # a level at a point in time: may be summed over areas, never over time


class SchemaKind(StrEnum):
    AGGREGATE = "aggregate"  # agencies report counts per cell
    CASE_BASED = "case_based"  # one row per case; the node aggregates, rows never leave


class ReportField(BaseModel):
    """A column of a pushed report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FieldType
    label: Label
    description: Label
    required: bool = True
    codelist: str | None = None
    hxl: str | None = None  # HXL hashtag for humanitarian exports

    @model_validator(mode="after")
    def _codelist_matches_type(self) -> ReportField:
        if (self.type == FieldType.CODE) != (self.codelist is not None):
            raise ValueError(f"field {self.name}: a code field names a code list, no other does")
        if self.codelist is not None and self.codelist not in CODE_LISTS:
            raise ValueError(f"field {self.name}: unknown code list {self.codelist}")
        return self


class Measure(BaseModel):
    """A countable quantity. For aggregate schemas it is also a field; for case-based ones it
    is derived (``count`` of rows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: Label
    description: Label
    unit: str
    kind: MeasureKind
    contribution_bound: int = Field(ge=1)
    maximum: int | None = Field(default=None, ge=1)  # most one cell may state; None: counts rows
    hxl: str | None = None


class ReportSchema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    kind: SchemaKind
    label: Label
    description: Label
    fields: tuple[ReportField, ...]
    dimensions: tuple[str, ...]  # fields (or the derived ``week``) a release may group by
    measures: tuple[Measure, ...]
    cell_key: tuple[str, ...]  # fields that identify a cell; a correction supersedes by it
    week_from: str | None = None  # case-based: the date field whose epi week is ``week``

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @model_validator(mode="after")
    def _consistent(self) -> ReportSchema:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.id}: a field name repeats")
        stored = set(names) | ({"week"} if self.week_from else set())
        for dim in self.dimensions:
            if dim not in stored:
                raise ValueError(f"{self.id}: dimension {dim} is not a field")
        for key in self.cell_key:
            if key not in names:
                raise ValueError(f"{self.id}: cell key {key} is not a field")
        if self.kind == SchemaKind.AGGREGATE:
            self._check_bounded()
        return self

    def _check_bounded(self) -> None:
        """An aggregate schema's sums must provably fit: see ``largest_sum``."""
        names = {f.name for f in self.fields}
        for m in self.measures:
            if m.name not in names:
                raise ValueError(f"{self.id}: measure {m.name} is not a field")
            if m.maximum is None:
                raise ValueError(f"{self.id}: measure {m.name} declares no maximum")
            if self.largest_sum(m.name) > SUM_LIMIT:
                raise ValueError(f"{self.id}: sums of {m.name} could exceed {SUM_LIMIT}")
        for f in self.fields:
            if f.type == FieldType.COUNT and f.name not in self.measure_by_name:
                raise ValueError(f"{self.id}: count field {f.name} is not a measure")
        bounded = (FieldType.AREA, FieldType.WEEK, FieldType.CODE)
        for key in self.cell_key:
            field = self.field_by_name[key]
            if not field.required or field.type not in bounded:
                raise ValueError(f"{self.id}: cell key {key} must be a required area, week or code")
        if sum(self.field_by_name[k].type == FieldType.AREA for k in self.cell_key) > 1:
            raise ValueError(f"{self.id}: a cell key names at most one area")

    @property
    def area_key(self) -> str | None:
        """The area field of the cell key, if any: where cells of different levels overlap."""
        return next(
            (k for k in self.cell_key if self.field_by_name[k].type == FieldType.AREA), None
        )

    def cells_per_value(self) -> int:
        """The most distinct cell keys there can be (areas x weeks x codes of the key)."""
        count = 1
        for key in self.cell_key:
            field = self.field_by_name[key]
            if field.type == FieldType.AREA:
                count *= MAX_AREAS
            elif field.type == FieldType.WEEK:
                count *= MAX_WEEKS
            else:
                count *= len(CODE_LISTS[field.codelist or ""].codes)
        return count

    def largest_sum(self, measure: str) -> int:
        """The largest sum of current stored values of ``measure`` that any query can make.

        Why no sum overflows ``int64``, in the SQL ``GROUP BY`` (SQLite raises on overflow,
        PostgreSQL's cast to ``bigint`` too) or in numpy's lay-over (which would wrap
        silently): (1) at most one current row exists per cell key, since a report states
        each cell once and supersedes every older current row of the cells it states, under
        a writer lock per schema; (2) an aggregate cell key is one area of a gazetteer of at
        most ``MAX_AREAS``, one of ``MAX_WEEKS`` weeks and codes of closed lists, so there
        are at most ``cells_per_value()`` keys; (3) no stored value exceeds the measure's
        ``maximum`` (push validation). Every sum, of one SQL group or of the groups laid on
        one released cell, is over distinct current rows, so it is at most this product,
        which each schema checks is at most ``SUM_LIMIT`` = 2^62: half of int64's range is
        left for the noise. (Weekly counts: 100,000 x 15,953 x 28 x 10^8 = 4.47e18 < 4.61e18.)
        """
        maximum = self.measure_by_name[measure].maximum
        assert maximum is not None, f"{self.id}: {measure} counts rows; rows never overflow"
        return self.cells_per_value() * maximum

    @cached_property
    def field_by_name(self) -> dict[str, ReportField]:
        return {f.name: f for f in self.fields}

    @cached_property
    def measure_by_name(self) -> dict[str, Measure]:
        return {m.name: m for m in self.measures}

    @property
    def stored_columns(self) -> tuple[str, ...]:
        """Columns of the cell table, in order: the fields, then the derived week if any."""
        names = tuple(f.name for f in self.fields)
        return (*names, "week") if self.week_from else names

    def dimension_type(self, name: str) -> FieldType:
        if name == "week" and self.week_from:
            return FieldType.WEEK
        return self.field_by_name[name].type

    def codelist_of(self, name: str) -> str | None:
        field = self.field_by_name.get(name)
        return field.codelist if field else None

    def check_aggregation(self, measure: str, over: str) -> None:
        """Refuse summing a stock over time: beds occupied in week 1 plus week 2 means nothing."""
        m = self.measure_by_name[measure]
        if m.kind == MeasureKind.STOCK and self.dimension_type(over) in (
            FieldType.WEEK,
            FieldType.DATE,
        ):
            raise StockOverTimeError(
                f"{m.name} is a stock (a level at a point in time); it cannot be summed over {over}"
            )


class StockOverTimeError(InvalidInputError):
    """A stock measure was asked to be summed across periods as if it were a flow."""
