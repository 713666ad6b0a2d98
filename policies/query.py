"""What a partner asks for (`ReleaseQuery`) and what it gets (`EffectiveQuery`).

A `ReleaseQuery` is the body of a pull: a schema, measures, the dimensions to group by
(optionally with a granularity: ``area:adm1``, ``week:month``), filters, a week range and a
purpose. It is checked for shape only; whether it is *allowed* is `policies.decision`'s job.

An `EffectiveQuery` is what the policy turned it into: every default filled in, every
granularity explicit, the week range clamped by the embargo and aligned to whole periods.
It is the query the release answers, and (without the purpose) the key of the release
cache: two requests with the same effective query over the same data get the same answer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

_NAME = r"^[a-z][a-z0-9_]*$"
_GROUP = re.compile(r"^([a-z][a-z0-9_]*)(?::([a-z0-9_]+))?$")
_WEEK = r"^[0-9]{4}-?W[0-9]{1,2}$"
_AREA_LEVEL = re.compile(r"^(?:adm)?([0-5])$")

MAX_MEASURES = 32
MAX_GROUP_BY = 8
MAX_FILTER_VALUES = 1000


def split_group(item: str) -> tuple[str, str | None]:
    """``area:adm1`` -> (``area``, ``adm1``); ``sex`` -> (``sex``, None)."""
    match = _GROUP.match(item)
    if match is None:
        raise ValueError(f"'{item}' is not a dimension, nor dimension:granularity")
    return match[1], match[2]


def area_level(granularity: str) -> int:
    """``adm1`` or ``1`` -> 1. Raises ValueError for anything else."""
    match = _AREA_LEVEL.match(granularity)
    if match is None:
        raise ValueError(f"'{granularity}' is not an admin level; write adm0 to adm5")
    return int(match[1])


_Name = Annotated[str, StringConstraints(max_length=64, pattern=_NAME)]
_Group = Annotated[str, StringConstraints(max_length=130, pattern=_GROUP.pattern)]
_Value = Annotated[str, StringConstraints(min_length=1, max_length=64)]
_Week = Annotated[str, StringConstraints(max_length=8, pattern=_WEEK)]


class ReleaseQuery(BaseModel):
    """A partner's request for an aggregate of one schema. Parsable from JSON.

    Its constraints sit on the types, so its JSON Schema (in the OpenAPI document) refuses
    what validation refuses, but for one dimension grouped at two granularities.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_id: str = Field(min_length=1, max_length=64, examples=["weekly_epi@1"])
    measures: tuple[_Name, ...] = Field(
        default=(),
        max_length=MAX_MEASURES,
        description="Measures to release; empty means every measure the agreement allows",
        json_schema_extra={"uniqueItems": True},
    )
    group_by: tuple[_Group, ...] = Field(
        default=(),
        max_length=MAX_GROUP_BY,
        description="Dimensions, optionally with a granularity: area:adm1, week:month; "
        "each dimension at most once",
        examples=[["area:adm1", "week"]],
        json_schema_extra={"uniqueItems": True},
    )
    filters: dict[
        _Name,
        Annotated[tuple[_Value, ...], Field(min_length=1, max_length=MAX_FILTER_VALUES)],
    ] = Field(
        default_factory=dict,
        max_length=MAX_GROUP_BY,
        description="Dimension -> the values to keep (areas, codes or the agreement's groups)",
        json_schema_extra={"additionalProperties": False},
    )
    since: _Week | None = Field(default=None, description="First epi week")
    until: _Week | None = Field(default=None, description="Last epi week")
    purpose: _Name | None = None

    @field_validator("measures")
    @classmethod
    def _measures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a measure is listed twice")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = [split_group(item)[0] for item in value]
        if len(set(names)) != len(names):
            raise ValueError("a dimension is grouped by twice")
        return value

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(split_group(item)[0] for item in self.group_by)


class EffectiveQuery(BaseModel):
    """The query a release answers, after the policy filled in and coarsened everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_id: str
    measures: tuple[str, ...]
    group_by: tuple[str, ...]  # canonical: area:admN, week:week|month, code dimensions bare
    filters: dict[str, tuple[str, ...]]  # keys and values sorted
    since: str
    until: str
    purpose: str
    code_groups: dict[str, dict[str, tuple[str, ...]]] = Field(
        default_factory=dict,
        description="For coded dimensions the agreement merges: group name -> codes",
    )

    @model_validator(mode="after")
    def _canonical(self) -> EffectiveQuery:
        if tuple(sorted(self.filters)) != tuple(self.filters):
            raise ValueError("effective filters must be sorted")
        return self

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(split_group(item)[0] for item in self.group_by)

    def granularity(self, dimension: str) -> str | None:
        for item in self.group_by:
            name, grain = split_group(item)
            if name == dimension:
                return grain
        return None

    def cache_view(self) -> dict[str, Any]:
        """Everything that determines the answer: the purpose does not."""
        return self.model_dump(mode="json", exclude={"purpose"})
