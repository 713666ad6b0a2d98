"""Budget accounts: which ledger rows a release is charged to, and what they hold.

A release is charged to two accounts: the partner's for the schema (cap from the
agreement) and the schema's global one (cap from ``schemas.<id>.global_budget``), each in
the period the charge falls in. Amounts are integer micro-epsilon (`policies.budget`).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from policies.budget import cap_micro, period_key
from policies.document import Agreement, PolicyDocument
from policies.node_policy import NodePolicy


class Charge(BaseModel):
    """One ledger account a release is charged to, with the cap the policy sets for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Literal["partner", "global"]
    partner_id: str  # "*" for the global account
    schema_id: str
    period: str  # "total", "2026" or "2026-03"
    cap_micro: int

    def describe(self) -> str:
        if self.scope == "global":
            return f"the global budget for {self.schema_id} ({self.period})"
        return f"{self.partner_id}'s budget for {self.schema_id} ({self.period})"


class BudgetLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    charge: Charge
    spent_micro: int

    @property
    def left_micro(self) -> int:
        """Never negative, even if the operator lowered a cap below what was spent."""
        return max(0, self.charge.cap_micro - self.spent_micro)


class BudgetOutlook(BaseModel):
    """The budget a release would meet: what is left, and whether the cost fits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lines: tuple[BudgetLine, ...]
    cost_micro: int  # 0 when a stored release answers the query
    cached_release: int | None = None

    @property
    def sufficient(self) -> bool:
        return all(line.left_micro >= self.cost_micro for line in self.lines)

    def shortfall(self) -> BudgetLine | None:
        """The first account that cannot pay, if any."""
        return next((line for line in self.lines if line.left_micro < self.cost_micro), None)


def partner_charge(agreement: Agreement, partner_id: str, now: dt.datetime) -> Charge:
    return Charge(
        scope="partner",
        partner_id=partner_id,
        schema_id=agreement.schema_id,
        period=period_key(agreement.budget.period, now),
        cap_micro=cap_micro(agreement.budget.epsilon),
    )


def global_charge(policy: NodePolicy, schema_id: str, now: dt.datetime) -> Charge:
    return _global_charge(policy.document, schema_id, now)


def _global_charge(document: PolicyDocument, schema_id: str, now: dt.datetime) -> Charge:
    budget = document.schemas[schema_id].global_budget
    return Charge(
        scope="global",
        partner_id="*",
        schema_id=schema_id,
        period=period_key(budget.period, now),
        cap_micro=cap_micro(budget.epsilon),
    )


def accounts_in_force(policy: NodePolicy, now: dt.datetime) -> tuple[Charge, ...]:
    """Every account the policy would charge at ``now``: for `exchange budget`."""
    return accounts_of(policy.document, now)


def accounts_of(document: PolicyDocument, now: dt.datetime) -> tuple[Charge, ...]:
    """Every account a policy document would charge at ``now``; it needs only the document,
    so an auditor holding the policy file can recompute the caps."""
    today = now.astimezone(dt.UTC).date()
    out: dict[tuple[str, str, str], Charge] = {}
    for schema_id in document.schemas:
        out[("global", "*", schema_id)] = _global_charge(document, schema_id, now)
    for agreement in document.agreements:
        if agreement.valid_from <= today <= agreement.valid_until:
            for partner in agreement.partners:
                charge = partner_charge(agreement, partner, now)
                out[("partner", partner, agreement.schema_id)] = charge
    return tuple(out[k] for k in sorted(out))
