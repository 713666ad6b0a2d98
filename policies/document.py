"""The policy document: a node's red lines, agreements and budgets, as written in YAML.

This module checks a document's *shape* (types, ranges, required fields, no unknown or
repeated keys). Whether it makes sense for this node (schemas exist, no agreement crosses a
red line, budgets are set) is checked by `policies.node_policy`. Both report problems as
a `PolicyError` naming the file, the place (``agreements[1].privacy.epsilon``), its line,
and the reason, so an operator can fix it without reading code. Nothing here reads files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies.budget import BudgetPeriod

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = r"^[a-z][a-z0-9_]*$"
Place = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyProblem:
    place: Place
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = dotted(self.place) or "the document"
        at = f" (line {self.line})" if self.line else ""
        return f"{where}{at}: {self.reason}"


class PolicyError(ValueError):
    """A policy that does not validate; the node must not start (or reload) with it."""

    def __init__(self, source: str, problems: Sequence[PolicyProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:10])
        more = f" (and {len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        super().__init__(f"{source}: invalid policy: {shown}{more}")


def dotted(place: Place) -> str:
    out = ""
    for part in place:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Privacy(_Model):
    """How each release is noised. ``epsilon`` is the whole release's (split over measures)."""

    mechanism: Literal["laplace", "gaussian"] = "laplace"
    epsilon: float = Field(gt=0, le=10)
    delta: float | None = Field(default=None, gt=0, le=1e-4)

    @model_validator(mode="after")
    def _delta_for_gaussian(self) -> Privacy:
        if (self.mechanism == "gaussian") != (self.delta is not None):
            raise ValueError("delta is required for the gaussian mechanism and only for it")
        return self


class Budget(_Model):
    epsilon: float = Field(gt=0, le=10_000)
    period: BudgetPeriod = "total"


class DimensionRule(_Model):
    """The finest detail of one dimension a partner may see."""

    level: int | None = Field(default=None, ge=0, le=5)  # area: the finest admin level
    period: Literal["week", "month"] | None = None  # week: weeks, or only whole months
    groups: dict[str, tuple[str, ...]] | None = None  # coded: released only as these groups


#: The longest an escalation may last, whatever a policy says: 90 days.
MAX_ESCALATION_HOURS = 24 * 90


class EscalationLimits(_Model):
    """How far an emergency escalation may widen an agreement, and for how long.

    An agreement without these limits cannot be escalated: deny by default. Red lines stay
    on top: limits that would cross one are a policy error.
    """

    max_hours: int = Field(ge=1, le=MAX_ESCALATION_HOURS)
    measures: tuple[str, ...] = ()  # measures an escalation may add
    dimensions: dict[str, DimensionRule] = Field(default_factory=dict)  # the finest allowed
    epsilon: float | None = Field(default=None, gt=0, le=10)  # the highest epsilon a release
    budget: float | None = Field(default=None, gt=0, le=10_000)  # the highest partner budget


class Agreement(_Model):
    id: str = Field(pattern=_ID)
    partners: tuple[str, ...] = Field(min_length=1)
    schema_id: str = Field(alias="schema", max_length=64)
    measures: tuple[str, ...] = Field(min_length=1)
    dimensions: dict[str, DimensionRule] = Field(default_factory=dict)
    filters: tuple[str, ...] = ()
    embargo_days: int = Field(ge=0, le=3650)
    purposes: tuple[str, ...] = Field(min_length=1)
    valid_from: dt.date
    valid_until: dt.date  # the sunset: the last day the agreement allows anything
    privacy: Privacy
    budget: Budget
    suppress_below: int = Field(default=0, ge=0, le=1_000_000)
    max_cells: int = Field(default=250_000, ge=1, le=5_000_000)
    escalation: EscalationLimits | None = None  # None: no emergency escalation of it

    @model_validator(mode="after")
    def _consistent(self) -> Agreement:
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until (the sunset) is before valid_from")
        for label, items in (
            ("partners", self.partners),
            ("measures", self.measures),
            ("purposes", self.purposes),
            ("filters", self.filters),
        ):
            if len(set(items)) != len(items):
                raise ValueError(f"{label} lists a value twice")
        return self


class RedLine(_Model):
    """What never leaves. With only ``schema``: the whole schema. Without ``schema``: the
    listed measures, dimensions and areas in every schema."""

    id: str = Field(pattern=_ID)
    reason: str = Field(default="", max_length=500)
    schema_id: str | None = Field(default=None, alias="schema", max_length=64)
    measures: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _says_something(self) -> RedLine:
        if self.schema_id is None and not (self.measures or self.dimensions or self.areas):
            raise ValueError("a red line names a schema, or measures, dimensions or areas")
        return self

    @property
    def whole_schema(self) -> bool:
        return self.schema_id is not None and not (self.measures or self.dimensions or self.areas)

    def covers(self, schema_id: str) -> bool:
        return self.schema_id is None or self.schema_id == schema_id


class SchemaSettings(_Model):
    global_budget: Budget  # across all partners: partners who share with each other add up
    weeks_per_person: int | None = Field(default=None, ge=1, le=520)


class PolicyDocument(_Model):
    version: Literal[1]
    node: str = Field(min_length=1, max_length=32)
    red_lines: tuple[RedLine, ...] = ()
    schemas: dict[str, SchemaSettings] = Field(default_factory=dict)
    agreements: tuple[Agreement, ...] = ()

    def canonical(self) -> dict[str, Any]:
        """The form that is hashed: field names as written in YAML, defaults filled in."""
        return self.model_dump(mode="json", by_alias=True)


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses repeated keys: with two ``epsilon:`` lines, which one rules?"""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' appears twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_policy(text: str, *, source: str) -> tuple[PolicyDocument, Any]:
    """Parse YAML into a document; return it with the YAML node tree (for `line_of`).

    Raises PolicyError naming the place and line of every problem found.
    """
    try:
        tree = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise PolicyError(source, [PolicyProblem((), str(exc.problem), line)]) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, [PolicyProblem((), str(exc))]) from None
    if not isinstance(data, dict):
        raise PolicyError(source, [PolicyProblem((), "a policy is a YAML mapping", 1)])
    try:
        return PolicyDocument.model_validate(data), tree
    except ValidationError as exc:
        problems = [
            PolicyProblem(tuple(e["loc"]), e["msg"], line_of(tree, tuple(e["loc"])))
            for e in exc.errors()
        ]
        raise PolicyError(source, problems) from None


def line_of(tree: Any, place: Place) -> int | None:
    """The 1-based line of ``place`` in the YAML node tree (its deepest existing part)."""
    node = tree
    line = node.start_mark.line + 1 if node is not None else None
    for part in place:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
