"""The full public key set of a release, and where each stored row lands in it.

A release covers *every* allowed key (every area of the allowed level, every week or month
of the range, every code or group), zero cells included: if only the cells with data were
released, the set of keys would itself reveal who reported what. The key set is built from
public domains (the gazetteer, the calendar, the code lists), never from the data.

Coarsening happens here too. SQL groups by the stored values (districts, weeks, raw age
bands); `KeySpace.locate` maps each stored value to its released key (the district's
ancestor at the allowed level via the gazetteer's parent links, the week's month, the
band's group) and drops what must not count: red-lined areas, the areas inside them, rows
stated for the areas that contain them (they include the red-lined data), and values
outside the partner's filters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.node_policy import NodePolicy
from policies.query import EffectiveQuery, area_level, split_group
from schemas.codelists import CODE_LISTS
from schemas.gazetteer import Gazetteer
from schemas.model import FieldType, ReportSchema
from schemas.periods import month_of_week, weeks_between


@dataclass(frozen=True)
class Axis:
    dimension: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class GroupColumn:
    """A stored column SQL groups by: where each of its values goes on the axis, if anywhere.
    ``stride`` 0 marks a column grouped only to drop rows (a restriction, not an axis)."""

    name: str
    positions: Mapping[str, int]
    stride: int


@dataclass(frozen=True)
class KeySpace:
    schema: ReportSchema
    axes: tuple[Axis, ...]
    columns: tuple[GroupColumn, ...]
    where_in: Mapping[str, frozenset[str]]  # coded filters on dimensions not grouped by
    since: str
    until: str

    @property
    def size(self) -> int:
        return math.prod(len(a.keys) for a in self.axes)

    @property
    def empty(self) -> bool:
        """No key, or no stored value that may count: nothing to release."""
        return self.size == 0 or any(not c.positions for c in self.columns)

    def locate(self, rows: int, values: Sequence[Sequence[Any]]) -> NDArray[np.int64]:
        """Flat cell index of each SQL result row (-1: the row does not count).
        ``values`` holds one sequence per column of ``columns``, in order."""
        flat = np.zeros(rows, dtype=np.int64)
        keep = np.ones(rows, dtype=np.bool_)
        for column, column_values in zip(self.columns, values, strict=True):
            get = column.positions.get
            position = np.fromiter(
                (get(v, -1) for v in column_values),
                dtype=np.int64,
                count=rows,
            )
            keep &= position >= 0
            flat += position * column.stride
        flat[~keep] = -1
        return flat


def _chain(gazetteer: Gazetteer, code: str) -> list[str]:
    """The code and all its ancestors up to the country."""
    out = [code]
    parent = gazetteer.by_code[code].parent
    while parent is not None:
        out.append(parent)
        parent = gazetteer.by_code[parent].parent
    return out


def area_exclusions(policy: NodePolicy, schema_id: str) -> tuple[frozenset[str], frozenset[str]]:
    """(codes whose rows never count, codes that are never keys) under the red lines."""
    red = set(policy.red_areas(schema_id))
    if not red:
        return frozenset(), frozenset()
    gazetteer = policy.gazetteer
    hidden = {c for c in gazetteer.codes if red.intersection(_chain(gazetteer, c))}
    containing = {a for code in red for a in _chain(gazetteer, code)}
    return frozenset(hidden | containing), frozenset(hidden)


def _within(gazetteer: Gazetteer, code: str, filter_codes: frozenset[str] | None) -> bool:
    return filter_codes is None or bool(filter_codes.intersection(_chain(gazetteer, code)))


def _area_axis(
    gazetteer: Gazetteer,
    level: int,
    filter_codes: frozenset[str] | None,
    withheld: frozenset[str],
    hidden: frozenset[str],
) -> tuple[tuple[str, ...], dict[str, int]]:
    keys = tuple(
        c
        for c in gazetteer.at_level(level)
        if c not in hidden and _within(gazetteer, c, filter_codes)
    )
    index = {k: i for i, k in enumerate(keys)}
    positions: dict[str, int] = {}
    for area in gazetteer.areas:
        if area.level >= level and area.code not in withheld:
            position = index.get(gazetteer.ancestor(area.code, level))
            if position is not None:
                positions[area.code] = position
    return keys, positions


def _week_axis(
    effective: EffectiveQuery, grain: str | None, policy: NodePolicy
) -> tuple[tuple[str, ...], dict[str, int]]:
    weeks = weeks_between(effective.since, effective.until, policy.week_system)
    if grain != "month":
        return tuple(weeks), {w: i for i, w in enumerate(weeks)}
    months = [month_of_week(w, policy.week_system) for w in weeks]
    keys = tuple(dict.fromkeys(months))
    index = {m: i for i, m in enumerate(keys)}
    return keys, {w: index[m] for w, m in zip(weeks, months, strict=True)}


def _code_axis(
    schema: ReportSchema, dimension: str, effective: EffectiveQuery
) -> tuple[tuple[str, ...], dict[str, int]]:
    groups = _groups(schema, dimension, effective)
    wanted = effective.filters.get(dimension)
    keys = tuple(g for g in groups if wanted is None or g in wanted)
    index = {k: i for i, k in enumerate(keys)}
    return keys, {code: index[g] for g, codes in groups.items() if g in index for code in codes}


def _groups(
    schema: ReportSchema, dimension: str, effective: EffectiveQuery
) -> dict[str, tuple[str, ...]]:
    groups = effective.code_groups.get(dimension)
    if groups is not None:
        return groups
    codelist = schema.codelist_of(dimension)
    assert codelist is not None
    return {code: (code,) for code in CODE_LISTS[codelist].ordered()}


def build(effective: EffectiveQuery, policy: NodePolicy) -> KeySpace:
    """The key set and SQL grouping of an effective query (already allowed by the policy)."""
    schema = policy.registry.get(effective.schema_id)
    gazetteer = policy.gazetteer
    withheld, hidden = area_exclusions(policy, schema.id)
    axes: list[Axis] = []
    positions: list[tuple[str, dict[str, int]]] = []
    area_filter: frozenset[str] | None = None
    where_in: dict[str, frozenset[str]] = {}
    for dimension, values in effective.filters.items():
        if schema.dimension_type(dimension) == FieldType.AREA:
            area_filter = frozenset(values)
    for item in effective.group_by:
        dimension, grain = split_group(item)
        kind = schema.dimension_type(dimension)
        if kind == FieldType.AREA:
            assert grain is not None
            keys, where = _area_axis(gazetteer, area_level(grain), area_filter, withheld, hidden)
        elif kind == FieldType.WEEK:
            keys, where = _week_axis(effective, grain, policy)
        else:
            keys, where = _code_axis(schema, dimension, effective)
        axes.append(Axis(dimension, keys))
        positions.append((dimension, where))
    strides = [math.prod(len(a.keys) for a in axes[i + 1 :]) for i in range(len(axes))]
    columns = [GroupColumn(n, p, s) for (n, p), s in zip(positions, strides, strict=True)]
    grouped = set(effective.dimensions)
    for dimension in schema.dimensions:
        if dimension in grouped:
            continue
        kind = schema.dimension_type(dimension)
        if kind == FieldType.AREA and (withheld or area_filter is not None):
            allowed = {
                c
                for c in gazetteer.codes
                if c not in withheld and _within(gazetteer, c, area_filter)
            }
            columns.append(GroupColumn(dimension, dict.fromkeys(allowed, 0), 0))
        elif kind == FieldType.CODE and dimension in effective.filters:
            groups = _groups(schema, dimension, effective)
            wanted = effective.filters[dimension]
            where_in[dimension] = frozenset(c for g in wanted for c in groups.get(g, ()))
    return KeySpace(
        schema=schema,
        axes=tuple(axes),
        columns=tuple(columns),
        where_in=where_in,
        since=effective.since,
        until=effective.until,
    )
