"""A policy document checked against the node it governs, with its hash.

`compile_policy` is the only way to get a `NodePolicy`, and it refuses a document that
names unknown schemas, measures, dimensions, codes or areas, sets no global budget for a
schema it shares, gives one partner two agreements for the same schema at the same time,
or has an agreement that contradicts a red line. A half-valid policy is never applied:
either everything checks, or `PolicyError` lists every problem with its place and line.

The hash is SHA-256 over the RFC 8785 canonical JSON of the document, so reformatting the
YAML or reordering keys does not change it, and every decision names the version it used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import rfc8785

from policies.document import (
    Agreement,
    PolicyDocument,
    PolicyError,
    PolicyProblem,
    RedLine,
    line_of,
    parse_policy,
)
from policies.validity import check_document
from schemas.gazetteer import Gazetteer
from schemas.periods import WeekSystem
from schemas.registry import SchemaRegistry

if TYPE_CHECKING:
    from policies.escalation import Grant


@dataclass(frozen=True, eq=False)
class NodePolicy:
    """A node's validated policy and everything deciding needs: schemas, gazetteer, weeks."""

    document: PolicyDocument
    hash: str
    source: str
    registry: SchemaRegistry
    gazetteer: Gazetteer
    week_system: WeekSystem
    missing: bool = False  # no policy file: the node shares nothing
    _by_partner: dict[tuple[str, str], tuple[Agreement, ...]] = field(
        default_factory=dict, repr=False
    )
    #: (partner, agreement id): the emergency escalation widening it (`policies.escalation`)
    escalations: Mapping[tuple[str, str], Grant] = field(default_factory=dict, repr=False)

    @property
    def node_id(self) -> str:
        return self.document.node

    @property
    def by_partner(self) -> Mapping[tuple[str, str], tuple[Agreement, ...]]:
        return self._by_partner

    def agreements_for(self, partner_id: str, schema_id: str) -> tuple[Agreement, ...]:
        return self._by_partner.get((partner_id, schema_id), ())

    def escalation_for(self, partner_id: str, agreement_id: str) -> Grant | None:
        return self.escalations.get((partner_id, agreement_id))

    def red_lines_for(self, schema_id: str) -> tuple[RedLine, ...]:
        return tuple(r for r in self.document.red_lines if r.covers(schema_id))

    def schema_red_line(self, schema_id: str) -> RedLine | None:
        return next((r for r in self.red_lines_for(schema_id) if r.whole_schema), None)

    def measure_red_line(self, schema_id: str, measure: str) -> RedLine | None:
        return next((r for r in self.red_lines_for(schema_id) if measure in r.measures), None)

    def dimension_red_line(self, schema_id: str, dimension: str) -> RedLine | None:
        return next((r for r in self.red_lines_for(schema_id) if dimension in r.dimensions), None)

    def red_areas(self, schema_id: str) -> dict[str, RedLine]:
        """Red-lined area codes of a schema, with the red line that names each."""
        return {a: r for r in self.red_lines_for(schema_id) for a in r.areas}


def policy_hash(document: PolicyDocument) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(document.canonical())).hexdigest()


def compile_policy(
    document: PolicyDocument,
    *,
    source: str,
    node_id: str,
    registry: SchemaRegistry,
    gazetteer: Gazetteer,
    week_system: WeekSystem,
    tree: Any = None,
    missing: bool = False,
) -> NodePolicy:
    """Check ``document`` against the node; raise PolicyError listing every problem."""
    found = check_document(document, node_id=node_id, registry=registry, gazetteer=gazetteer)
    if found:
        raise PolicyError(
            source, [PolicyProblem(place, reason, line_of(tree, place)) for place, reason in found]
        )
    by_partner: dict[tuple[str, str], list[Agreement]] = {}
    for agreement in document.agreements:
        for partner in agreement.partners:
            by_partner.setdefault((partner, agreement.schema_id), []).append(agreement)
    return NodePolicy(
        document=document,
        hash=policy_hash(document),
        source=source,
        registry=registry,
        gazetteer=gazetteer,
        week_system=week_system,
        missing=missing,
        _by_partner={k: tuple(v) for k, v in by_partner.items()},
    )


def load_policy(
    text: str,
    *,
    source: str,
    node_id: str,
    registry: SchemaRegistry,
    gazetteer: Gazetteer,
    week_system: WeekSystem,
) -> NodePolicy:
    """Parse and check a policy's YAML text. Raises PolicyError (file, place, line, reason)."""
    document, tree = parse_policy(text, source=source)
    return compile_policy(
        document,
        source=source,
        node_id=node_id,
        registry=registry,
        gazetteer=gazetteer,
        week_system=week_system,
        tree=tree,
    )


def deny_all(
    *,
    source: str,
    node_id: str,
    registry: SchemaRegistry,
    gazetteer: Gazetteer,
    week_system: WeekSystem,
) -> NodePolicy:
    """The policy of a node without a policy file: no agreements, so nothing leaves."""
    return compile_policy(
        PolicyDocument(version=1, node=node_id),
        source=source,
        node_id=node_id,
        registry=registry,
        gazetteer=gazetteer,
        week_system=week_system,
        missing=True,
    )
