"""Emergency escalations: a temporary widening of one agreement, approved by two people.

An escalation is data, not a policy edit (DESIGN.md): the node keeps proposals and
approvals in its database (`nodes.escalations`) and this module computes the effective
policy from the policy file plus the escalations in force, so `decide()` stays pure.

The red lines stay on top twice over. A proposal is checked here against the agreement's
``escalation`` limits and against every red line, and refused naming the red line it would
cross; and `decide()` checks red lines on every request whatever the agreement says. An
escalation never outlives its agreement: the widened agreement keeps its sunset.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.document import Agreement, DimensionRule, EscalationLimits
from policies.node_policy import NodePolicy
from policies.validity import rule_problems
from schemas.model import FieldType, ReportSchema


class Widening(BaseModel):
    """What an escalation widens; each part within the agreement's escalation limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    measures: tuple[str, ...] = ()  # measures added to the agreement's
    dimensions: dict[str, DimensionRule] = Field(default_factory=dict)  # rules replaced
    epsilon: float | None = Field(default=None, gt=0, le=10)  # each release's epsilon
    budget: float | None = Field(default=None, gt=0, le=10_000)  # the partner's budget

    @property
    def empty(self) -> bool:
        return not (self.measures or self.dimensions) and self.epsilon is None and not self.budget

    def describe(self) -> str:
        """One line an operator, a partner and an auditor read the same way."""
        parts = [f"measure {m}" for m in self.measures]
        for name, rule in self.dimensions.items():
            if rule.level is not None:
                parts.append(f"{name} down to admin level {rule.level}")
            elif rule.groups is not None:
                parts.append(f"{name} in groups {', '.join(rule.groups)}")
            else:
                parts.append(f"{name} by {rule.period or 'week'}")
        if self.epsilon is not None:
            parts.append(f"ε {self.epsilon:g} per release")
        if self.budget is not None:
            parts.append(f"a budget of ε {self.budget:g}")
        return "; ".join(parts) or "nothing"


@dataclass(frozen=True)
class Proposal:
    agreement_id: str
    partners: tuple[str, ...]  # empty: every partner of the agreement
    widening: Widening
    hours: int


@dataclass(frozen=True)
class Grant:
    """An approved escalation in force: what deciding needs and what a release names."""

    id: int
    agreement_id: str
    partners: tuple[str, ...]
    widening: Widening
    proposed_by: str
    approved_by: str
    starts_at: dt.datetime
    ends_at: dt.datetime

    def statement(self) -> dict[str, Any]:
        """The part of a signed release that says it was made under this escalation."""
        return {
            "id": self.id,
            "agreement": self.agreement_id,
            "widens": self.widening.model_dump(mode="json", exclude_defaults=True),
            "proposed_by": self.proposed_by,
            "approved_by": self.approved_by,
            "from": _utc(self.starts_at),
            "until": _utc(self.ends_at),
        }

    def note(self) -> str:
        return (
            f"emergency escalation {self.id} widens agreement {self.agreement_id} "
            f"({self.widening.describe()}) until {_utc(self.ends_at)}, proposed by "
            f"{self.proposed_by} and approved by {self.approved_by}"
        )


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_agreement(policy: NodePolicy, agreement_id: str) -> Agreement | None:
    return next((a for a in policy.document.agreements if a.id == agreement_id), None)


def check(policy: NodePolicy, proposal: Proposal, now: dt.datetime) -> tuple[str, ...]:
    """Every reason the policy refuses ``proposal`` at ``now``; empty when it may stand.

    Reasons that name a red line come first: they are the ones no approval can overrule.
    """
    agreement = find_agreement(policy, proposal.agreement_id)
    if agreement is None:
        return (f"the policy has no agreement {proposal.agreement_id}",)
    rule = f"agreement {agreement.id}"
    today = now.astimezone(dt.UTC).date()
    if not agreement.valid_from <= today <= agreement.valid_until:
        return (
            f"{rule} is not in force today (from {agreement.valid_from} until "
            f"{agreement.valid_until}); an escalation widens an agreement in force only",
        )
    limits = agreement.escalation
    if limits is None:
        return (f"{rule} does not allow emergency escalation: the policy sets it no limits",)
    schema = policy.registry.get(agreement.schema_id)
    red = list(_red_lines(policy, schema, proposal.widening))
    found = [*red, *_limits(agreement, limits, schema, proposal)]
    if proposal.widening.empty:
        found.append("the escalation widens nothing")
    return tuple(found)


def _red_lines(policy: NodePolicy, schema: ReportSchema, widening: Widening) -> Iterable[str]:
    for measure in widening.measures:
        red = policy.measure_red_line(schema.id, measure)
        if red is not None:
            yield f"red line {red.id}: measure {measure} never leaves, escalation or not"
    for name in widening.dimensions:
        red = policy.dimension_red_line(schema.id, name)
        if red is not None:
            yield f"red line {red.id}: dimension {name} never leaves, escalation or not"


def _limits(
    agreement: Agreement, limits: EscalationLimits, schema: ReportSchema, proposal: Proposal
) -> Iterable[str]:
    rule = f"agreement {agreement.id}"
    strangers = [p for p in proposal.partners if p not in agreement.partners]
    if strangers:
        yield f"{rule} is not with {', '.join(strangers)}"
    if not 1 <= proposal.hours <= limits.max_hours:
        yield f"{rule} allows escalations of 1 to {limits.max_hours} hours, not {proposal.hours}"
    widening = proposal.widening
    allowed = (*agreement.measures, *limits.measures)
    for measure in widening.measures:
        if measure not in schema.measure_by_name:
            yield f"{schema.id} has no measure {measure}"
        elif measure not in allowed:
            yield f"the escalation limits of {rule} do not allow adding measure {measure}"
    for name, asked in widening.dimensions.items():
        if name not in schema.dimensions:
            yield f"{schema.id} has no dimension {name}"
            continue
        wrong = list(rule_problems(schema, name, asked))
        if wrong:
            yield from (f"{name}: {reason}" for reason in wrong)
            continue
        cap = limits.dimensions.get(name) or agreement.dimensions.get(name)
        if cap is None:
            yield f"the escalation limits of {rule} do not allow releasing {name}"
        elif not _within(schema.dimension_type(name), asked, cap):
            yield f"the escalation limits of {rule} allow {name} at most as {_shown(cap)}"
    if widening.epsilon is not None and (
        limits.epsilon is None or widening.epsilon > limits.epsilon
    ):
        yield f"the escalation limits of {rule} allow ε {limits.epsilon or 0:g} per release at most"
    if widening.budget is not None and (limits.budget is None or widening.budget > limits.budget):
        yield f"the escalation limits of {rule} allow a budget of ε {limits.budget or 0:g} at most"


def _within(kind: FieldType, asked: DimensionRule, cap: DimensionRule) -> bool:
    if kind == FieldType.AREA:
        return (asked.level or 0) <= (cap.level or 0)
    if kind == FieldType.WEEK:
        return (cap.period or "week") == "week" or asked.period == "month"
    return cap.groups is None or asked.groups == cap.groups


def _shown(rule: DimensionRule) -> str:
    if rule.level is not None:
        return f"admin level {rule.level}"
    if rule.groups is not None:
        return f"groups {', '.join(rule.groups)}"
    return f"{rule.period or 'week'}s"


def widened(agreement: Agreement, widening: Widening) -> Agreement:
    """The agreement as an escalation makes it: same id, partners, purposes and sunset."""
    update: dict[str, Any] = {
        "measures": (
            *agreement.measures,
            *(m for m in widening.measures if m not in agreement.measures),
        ),
        "dimensions": {**agreement.dimensions, **widening.dimensions},
    }
    if widening.epsilon is not None:
        update["privacy"] = agreement.privacy.model_copy(update={"epsilon": widening.epsilon})
    if widening.budget is not None:
        update["budget"] = agreement.budget.model_copy(update={"epsilon": widening.budget})
    return agreement.model_copy(update=update)


def effective(policy: NodePolicy, grants: Sequence[Grant]) -> NodePolicy:
    """``policy`` with each grant's agreement widened for the grant's partners."""
    if not grants:
        return policy
    by_partner = dict(policy.by_partner)
    in_force = dict(policy.escalations)
    for grant in grants:
        agreement = find_agreement(policy, grant.agreement_id)
        if agreement is None:  # the policy changed since: the escalation has nothing to widen
            continue
        wide = widened(agreement, grant.widening)
        for partner in grant.partners:
            key = (partner, agreement.schema_id)
            by_partner[key] = tuple(
                wide if a.id == agreement.id else a for a in by_partner.get(key, ())
            )
            in_force[(partner, agreement.id)] = grant
    return dataclasses.replace(policy, _by_partner=by_partner, escalations=in_force)
