"""``decide(request, policy, now)``: may this partner have this aggregate, and at what cost?

Deny by default. A request is allowed only when one agreement, valid today, covers the
partner and the schema and allows every measure, dimension, granularity, filter and the
purpose asked for, and no red line forbids any of it. Every decision says why in sentences
a diplomat can read, naming the rule ("agreement XB-epi-2026 allows admin level 1, the
request asked for admin level 2"); a denial lists every reason at once.

A decision is ``Allowed`` or ``Denied``, two types rather than one with optional fields, so
that code that releases takes an ``Allowed`` and never has to check. An allowed decision
carries the effective query (defaults filled in, the range clamped by the embargo and
aligned to whole months), the size of its key set, its privacy cost as OpenDP prices it,
and the ledger accounts to charge. Pure: no I/O, no clock (``now`` is passed in), so it is
exhaustively testable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from policies import keyspace, privacy
from policies.accounts import BudgetOutlook, Charge, global_charge, partner_charge
from policies.budget import epsilon, show
from policies.document import Agreement
from policies.keyspace import KeySpace
from policies.node_policy import NodePolicy
from policies.privacy import PrivacyCost
from policies.query import EffectiveQuery, ReleaseQuery
from policies.rules import AgreementCheck
from policies.sensitivity import sensitivities


@dataclass(frozen=True)
class ReleaseRequest:
    partner_id: str
    query: ReleaseQuery


class _Verdict(BaseModel):
    """What every decision says: which rule decided, why, about what."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: bool  # narrowed to a Literal by each subclass; first in every JSON
    rule: str  # the rule that decided: "agreement XB-epi-2026", "red line ...", "deny by default"
    reasons: tuple[str, ...]
    partner_id: str
    schema_id: str
    policy_hash: str
    requested: ReleaseQuery
    budget: BudgetOutlook | None = None  # filled in by the node (`nodes.releases.pipeline.check`)

    @property
    def sentence(self) -> str:
        return "; ".join(self.reasons)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, in ε rather than µε: what ``policy check`` shows, on the CLI or HTTP.

        One shape for both verdicts: a denial has ``null`` agreement, effective query and
        cost, and 0 cells."""
        granted = self if isinstance(self, Allowed) else None
        cost = None
        if granted is not None:
            cost = {
                "epsilon": epsilon(granted.cost.epsilon_micro),
                "mechanism": granted.cost.mechanism,
                "delta": granted.cost.delta,
                "confidence": granted.cost.confidence,
                "measures": [
                    {
                        "measure": c.measure,
                        "sensitivity": c.d_in,
                        "scale": c.scale,
                        "epsilon": epsilon(c.epsilon_micro),
                        "accuracy": c.accuracy,
                    }
                    for c in granted.cost.measures
                ],
            }
        budget = None
        if self.budget is not None:
            budget = [
                {
                    "account": line.charge.describe(),
                    "cap": epsilon(line.charge.cap_micro),
                    "spent": epsilon(line.spent_micro),
                    "left": epsilon(line.left_micro),
                    "left_after": epsilon(max(0, line.left_micro - self.budget.cost_micro)),
                    "sufficient": line.left_micro >= self.budget.cost_micro,
                }
                for line in self.budget.lines
            ]
        return {
            "allowed": self.allowed,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "partner_id": self.partner_id,
            "schema_id": self.schema_id,
            "agreement_id": None if granted is None else granted.agreement_id,
            "policy_hash": self.policy_hash,
            "requested": self.requested.model_dump(mode="json"),
            "effective": None if granted is None else granted.effective.model_dump(mode="json"),
            "cells": 0 if granted is None else granted.cells,
            "cost": cost,
            "budget": budget,
            "cached_release": None if self.budget is None else self.budget.cached_release,
            "escalation": None if granted is None else granted.escalation,
        }


class Allowed(_Verdict):
    """The policy allows the request: this query, over this many cells, at this cost."""

    allowed: Literal[True] = True
    agreement_id: str
    effective: EffectiveQuery
    cells: int
    cost: PrivacyCost
    charges: tuple[Charge, ...]
    suppress_below: int
    #: the emergency escalation this release relies on (`policies.escalation.Grant.statement`)
    escalation: dict[str, Any] | None = None


class Denied(_Verdict):
    """The policy refuses the request; ``rule`` and ``reasons`` say why."""

    allowed: Literal[False] = False


Decision = Allowed | Denied


def decide(request: ReleaseRequest, policy: NodePolicy, now: dt.datetime) -> Decision:
    """The policy's answer to ``request`` at ``now`` (UTC-aware)."""
    return decide_with_keys(request, policy, now)[0]


def decide_with_keys(
    request: ReleaseRequest, policy: NodePolicy, now: dt.datetime
) -> tuple[Allowed, KeySpace] | tuple[Denied, None]:
    """`decide`, plus the key set it built for an allowed request (the release needs it)."""
    if now.tzinfo is None:
        raise ValueError("naive datetime; decisions are made in UTC")
    schema_id = request.query.schema_id
    node = policy.node_id
    if policy.missing:
        return _deny(
            request,
            policy,
            "deny by default",
            f"node {node} has no policy file, so it shares nothing",
        )
    if schema_id not in policy.registry:
        return _deny(request, policy, "deny by default", f"node {node} has no schema {schema_id}")
    red = policy.schema_red_line(schema_id)
    if red is not None:
        because = f" ({red.reason})" if red.reason else ""
        return _deny(
            request,
            policy,
            f"red line {red.id}",
            f"red line {red.id}: {schema_id} never leaves node {node}{because}",
        )
    agreement, refusal = _agreement_in_force(request, policy, now)
    if agreement is None:
        return _deny(request, policy, *refusal)
    return _within(request, policy, agreement, now)


def _deny(
    request: ReleaseRequest, policy: NodePolicy, rule: str, *reasons: str
) -> tuple[Denied, None]:
    decision = Denied(
        rule=rule,
        reasons=reasons,
        partner_id=request.partner_id,
        schema_id=request.query.schema_id,
        policy_hash=policy.hash,
        requested=request.query,
    )
    return decision, None


def _agreement_in_force(
    request: ReleaseRequest, policy: NodePolicy, now: dt.datetime
) -> tuple[Agreement | None, tuple[str, str]]:
    schema_id = request.query.schema_id
    agreements = policy.agreements_for(request.partner_id, schema_id)
    if not agreements:
        return None, (
            "deny by default",
            f"no agreement lets {request.partner_id} receive {schema_id} from node "
            f"{policy.node_id}; a node shares only what it has agreed to share",
        )
    today = now.astimezone(dt.UTC).date()
    for agreement in agreements:
        if agreement.valid_from <= today <= agreement.valid_until:
            return agreement, ("", "")
    ended = [a for a in agreements if a.valid_until < today]
    if ended:
        last = max(ended, key=lambda a: a.valid_until)
        return None, (
            f"agreement {last.id}",
            f"agreement {last.id} ended on {last.valid_until} (its sunset date) and no "
            "longer allows anything",
        )
    first = min(agreements, key=lambda a: a.valid_from)
    return None, (
        f"agreement {first.id}",
        f"agreement {first.id} takes effect on {first.valid_from}; it allows nothing before",
    )


def _within(
    request: ReleaseRequest,
    policy: NodePolicy,
    agreement: Agreement,
    now: dt.datetime,
) -> tuple[Allowed, KeySpace] | tuple[Denied, None]:
    rule = f"agreement {agreement.id}"
    check = AgreementCheck(request.partner_id, request.query, policy, agreement, now)
    effective = check.effective()
    if effective is None:  # a red line refuses whatever the agreement says: it is the rule
        deciding = f"red line {check.red_lines[0]}" if check.red_lines else rule
        return _deny(request, policy, deciding, *check.problems)
    space = keyspace.build(effective, policy)
    if space.empty:
        reason = "nothing to release: red lines or filters leave no area whose data may count"
        return _deny(request, policy, rule, reason)
    if space.size > agreement.max_cells:
        reason = (
            f"the release would have {space.size:,} cells; {rule} allows at most "
            f"{agreement.max_cells:,} (ask for a shorter range or coarser groups)"
        )
        return _deny(request, policy, rule, reason)
    schema = policy.registry.get(effective.schema_id)
    settings = policy.document.schemas[schema.id]
    cost = privacy.plan(
        agreement.privacy.mechanism,
        sensitivities(
            schema,
            effective,
            settings.weeks_per_person,
            policy.week_system,
            agreement.privacy.mechanism,
        ),
        epsilon=agreement.privacy.epsilon,
        delta=agreement.privacy.delta,
    )
    charges = (
        partner_charge(agreement, request.partner_id, now),
        global_charge(policy, schema.id, now),
    )
    widest = max(c.accuracy for c in cost.measures)
    grant = policy.escalation_for(request.partner_id, agreement.id)
    reasons = (
        *(() if grant is None else (grant.note(),)),
        *check.notes,
        f"the release has {space.size:,} cells and costs {show(cost.epsilon_micro)} "
        f"({cost.mechanism} mechanism); each value is within ±{widest:.1f} of the truth "
        "with 95% confidence",
    )
    decision = Allowed(
        rule=rule,
        reasons=reasons,
        agreement_id=agreement.id,
        effective=effective,
        cells=space.size,
        cost=cost,
        charges=charges,
        suppress_below=agreement.suppress_below,
        escalation=None if grant is None else grant.statement(),
        partner_id=request.partner_id,
        schema_id=schema.id,
        policy_hash=policy.hash,
        requested=request.query,
    )
    return decision, space
