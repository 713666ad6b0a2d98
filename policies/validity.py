"""Does a policy document make sense for this node? Every problem, with its place.

Kept apart from `policies.node_policy` so the rules read as a list: each check yields
``(place, reason)`` and `check_document` collects them all, so the operator fixes the
whole file in one pass rather than one error per restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from policies.document import Agreement, DimensionRule, Place, PolicyDocument, RedLine
from schemas.codelists import CODE_LISTS
from schemas.gazetteer import Gazetteer
from schemas.model import FieldType, ReportSchema
from schemas.registry import SchemaRegistry

Problem = tuple[Place, str]
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check_document(
    document: PolicyDocument, *, node_id: str, registry: SchemaRegistry, gazetteer: Gazetteer
) -> list[Problem]:
    found: list[Problem] = []
    if document.node != node_id:
        found.append((("node",), f"this policy is for node {document.node}, not {node_id}"))
    for schema_id in document.schemas:
        if schema_id not in registry:
            found.append((("schemas", schema_id), f"no schema {schema_id} on this node"))
    found += _unique_ids("red_lines", [r.id for r in document.red_lines])
    found += _unique_ids("agreements", [a.id for a in document.agreements])
    for i, red in enumerate(document.red_lines):
        found += [(("red_lines", i, *p), r) for p, r in _red_line(red, registry, gazetteer)]
    for i, agreement in enumerate(document.agreements):
        found += [(("agreements", i, *p), r) for p, r in _agreement(agreement, document, registry)]
    found += _overlaps(document)
    return found


def _unique_ids(section: str, ids: list[str]) -> list[Problem]:
    return [
        ((section, i, "id"), f"id {ident} is used twice")
        for i, ident in enumerate(ids)
        if ident in ids[:i]
    ]


def _red_line(red: RedLine, registry: SchemaRegistry, gazetteer: Gazetteer) -> Iterator[Problem]:
    if red.schema_id is not None and red.schema_id not in registry:
        yield ("schema",), f"no schema {red.schema_id} on this node"
        return
    schemas = [registry.get(red.schema_id)] if red.schema_id else list(registry)
    for i, measure in enumerate(red.measures):
        if not any(measure in s.measure_by_name for s in schemas):
            yield ("measures", i), f"no schema it covers has a measure {measure}"
    for i, dimension in enumerate(red.dimensions):
        if not any(dimension in s.dimensions for s in schemas):
            yield ("dimensions", i), f"no schema it covers has a dimension {dimension}"
    for i, area in enumerate(red.areas):
        if area not in gazetteer.codes:
            yield ("areas", i), f"area {area} is not in this node's gazetteer"


def _agreement(
    agreement: Agreement, document: PolicyDocument, registry: SchemaRegistry
) -> Iterator[Problem]:
    for i, partner in enumerate(agreement.partners):
        if not _NODE_ID.match(partner):
            yield ("partners", i), f"'{partner}' is not a node id"
        if partner == document.node:
            yield ("partners", i), "a node does not pull from itself"
    for i, purpose in enumerate(agreement.purposes):
        if not _NAME.match(purpose):
            yield ("purposes", i), f"'{purpose}' is not a purpose name (lowercase, _)"
    if agreement.schema_id not in registry:
        yield ("schema",), f"no schema {agreement.schema_id} on this node"
        return
    schema = registry.get(agreement.schema_id)
    if schema.id not in document.schemas:
        yield (
            ("schema",),
            (
                f"schemas.{schema.id}.global_budget is not set; every shared schema needs a "
                "global budget across all partners"
            ),
        )
    yield from _measures_and_dimensions(schema, agreement.measures, agreement.dimensions)
    for i, name in enumerate(agreement.filters):
        if name not in agreement.dimensions:
            yield ("filters", i), f"{name} can be a filter only if it is among the dimensions"
        elif schema.dimension_type(name) not in (FieldType.AREA, FieldType.CODE):
            yield ("filters", i), f"{name} cannot be filtered; use since and until for weeks"
    yield from _red_line_conflicts(agreement, document, schema)
    if agreement.escalation is not None:
        for place, reason in _escalation_limits(agreement, document, schema):
            yield ("escalation", *place), reason


def _escalation_limits(
    agreement: Agreement, document: PolicyDocument, schema: ReportSchema
) -> Iterator[Problem]:
    """Limits name what the schema has, in the forms its agreement rules take, and never
    reach past a red line: an escalation within them can never cross one."""
    limits = agreement.escalation
    assert limits is not None
    yield from _measures_and_dimensions(schema, limits.measures, limits.dimensions)
    for red in document.red_lines:
        if red.covers(schema.id):
            yield from _crossing(red, limits.measures, limits.dimensions)


def _measures_and_dimensions(
    schema: ReportSchema, measures: tuple[str, ...], dimensions: dict[str, DimensionRule]
) -> Iterator[Problem]:
    """What an agreement (or its escalation limits) names exists, in a form its type takes."""
    for i, measure in enumerate(measures):
        if measure not in schema.measure_by_name:
            yield ("measures", i), f"{schema.id} has no measure {measure}"
    for name, rule in dimensions.items():
        if name not in schema.dimensions:
            yield ("dimensions", name), f"{schema.id} has no dimension {name}"
            continue
        for reason in rule_problems(schema, name, rule):
            yield ("dimensions", name), reason


def _crossing(
    red: RedLine, measures: tuple[str, ...], dimensions: dict[str, DimensionRule]
) -> Iterator[Problem]:
    for i, measure in enumerate(measures):
        if measure in red.measures:
            yield ("measures", i), f"red line {red.id}: measure {measure} never leaves"
    for name in dimensions:
        if name in red.dimensions:
            yield ("dimensions", name), f"red line {red.id}: dimension {name} never leaves"


def rule_problems(schema: ReportSchema, name: str, rule: DimensionRule) -> Iterator[str]:
    kind = schema.dimension_type(name)
    if kind == FieldType.AREA:
        if rule.level is None or rule.period is not None or rule.groups is not None:
            yield "an area dimension takes 'level' (the finest admin level allowed), only"
    elif kind == FieldType.WEEK:
        if rule.level is not None or rule.groups is not None:
            yield "a week dimension takes 'period' (week or month), only"
    elif kind == FieldType.CODE:
        if rule.level is not None or rule.period is not None:
            yield "a coded dimension takes 'groups', only"
        if rule.groups is not None:
            yield from _groups(schema, name, rule.groups)
    else:
        yield f"{name} is a {kind.value} field; it is never released"


def _groups(schema: ReportSchema, name: str, groups: dict[str, tuple[str, ...]]) -> Iterator[str]:
    codelist = schema.codelist_of(name)
    assert codelist is not None
    known = CODE_LISTS[codelist].values()
    if not groups:
        yield "groups is empty; omit it to release the codes themselves"
    seen: set[str] = set()
    for group, codes in groups.items():
        if not group or len(group) > 64:
            yield f"group name '{group}' is empty or longer than 64 characters"
        if not codes:
            yield f"group {group} has no codes"
        for code in codes:
            if code not in known:
                yield f"group {group}: {code} is not in code list {codelist}"
            elif code in seen:
                # One person would count in two cells: the sensitivity would double unseen.
                yield f"group {group}: {code} is already in another group; groups must not overlap"
            seen.add(code)


def _red_line_conflicts(
    agreement: Agreement, document: PolicyDocument, schema: ReportSchema
) -> Iterator[Problem]:
    for red in document.red_lines:
        if not red.covers(schema.id):
            continue
        if red.whole_schema:
            yield ("schema",), f"red line {red.id}: {schema.id} never leaves this node"
        yield from _crossing(red, agreement.measures, agreement.dimensions)


def _overlaps(document: PolicyDocument) -> Iterator[Problem]:
    """One partner, one schema, one agreement at a time: otherwise which rules apply?"""
    agreements = document.agreements
    for i, a in enumerate(agreements):
        for b in agreements[:i]:
            shared = sorted(set(a.partners) & set(b.partners))
            if (
                shared
                and a.schema_id == b.schema_id
                and a.valid_from <= b.valid_until
                and b.valid_from <= a.valid_until
            ):
                yield (
                    ("agreements", i, "valid_from"),
                    (
                        f"agreement {a.id} overlaps agreement {b.id} for partner {shared[0]} and "
                        f"{a.schema_id}; end one before the other begins"
                    ),
                )
