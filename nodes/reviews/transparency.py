"""The public transparency review: per period, what went out to whom and at what privacy cost.

One pure function, `compute`, turns audit entries into the review; the dashboard's public
page, ``exchange report transparency`` and its ``--verify`` all call it, so a figure on the
page, in a signed review and in an auditor's recomputation is the same figure. It counts
only the entries the named checkpoint covers (seq below its tree size), so anyone holding
an export that includes that checkpoint recomputes the review exactly.

A review holds counts, rule names, ε in integer micro-ε, escalation ids and times: never a
data value, a query, a filter value, a request digest, a token name or a reason text (a
reason may describe data). Refusals are counted per rule (``agreement ID``, ``red line
ID``, ``deny by default``, ``budget``): the rule is what a reader needs to judge a refusal,
and the operator chooses its ids.

Signed with the node key and checked against an export by `nodes.reviews.transparency_check`.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from nodes.audit import verifier
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.checkpoint_store import latest_checkpoint
from nodes.audit.tables import audit_entries, audit_lookup
from nodes.audit.vocabulary import normalize
from nodes.database import reading
from nodes.reviews import budgets
from nodes.times import utc_text
from policies.accounts import Charge, accounts_in_force

if TYPE_CHECKING:
    from nodes.node import Node
    from policies.node_policy import NodePolicy

REVIEW_TYPE = "crisis-exchange/transparency-review/v1"
#: What a refusal written before refusals named their rule is counted under.
UNNAMED_RULE = "not recorded"
_ESCALATION_STEPS = {
    ("escalation.propose", "allowed"): "proposed",
    ("escalation.propose", "denied"): "refused",
    ("escalation.approve", "allowed"): "approved",
    ("escalation.approve", "denied"): "refused",
    ("escalation.revoke", "allowed"): "revoked",
    ("escalation.expire", "allowed"): "expired",
}
_STEPS = ("proposed", "refused", "approved", "revoked", "expired")
#: The end an approval entry states (`nodes.escalations.approve`); read, never published.
_APPROVED_UNTIL = re.compile(r" until (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC\Z")
_PERIOD = re.compile(r"(\d{4})(?:-Q([1-4])|-(0[1-9]|1[0-2]))?\Z")


class PeriodError(ValueError):
    """A period that is not a year, a quarter or a month."""


@dataclass(frozen=True)
class Period:
    """A calendar year (``2026``), quarter (``2026-Q4``) or month (``2026-11``) in UTC;
    ``start`` inclusive, ``end`` exclusive."""

    name: str
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def parse(cls, text: str) -> Period:
        """Raises PeriodError naming the accepted forms."""
        found = _PERIOD.fullmatch(text.strip())
        if found is None or not 1 <= int(found[1]) <= 9998:
            raise PeriodError(
                f"{text!r} is not a period: write a year (2026), a quarter (2026-Q4) or a "
                "month (2026-11)"
            )
        year = int(found[1])
        if found[2]:
            first, months = 3 * int(found[2]) - 2, 3
        elif found[3]:
            first, months = int(found[3]), 1
        else:
            first, months = 1, 12
        after = first + months
        end = dt.datetime(year + (after - 1) // 12, (after - 1) % 12 + 1, 1, tzinfo=dt.UTC)
        return cls(found[0], dt.datetime(year, first, 1, tzinfo=dt.UTC), end)

    @classmethod
    def quarter_of(cls, moment: dt.datetime) -> Period:
        moment = moment.astimezone(dt.UTC)
        return cls.parse(f"{moment.year:04d}-Q{(moment.month - 1) // 3 + 1}")

    def before(self) -> Period:
        """The period of the same kind just before this one."""
        return type(self).parse(_name_like(self.name, self.start - dt.timedelta(days=1)))

    def holds(self, moment: dt.datetime) -> bool:
        return self.start <= moment < self.end

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "start": utc_text(self.start), "end": utc_text(self.end)}


def _name_like(name: str, moment: dt.datetime) -> str:
    if "-Q" in name:
        return f"{moment.year:04d}-Q{(moment.month - 1) // 3 + 1}"
    return f"{moment.year:04d}-{moment.month:02d}" if "-" in name else f"{moment.year:04d}"


@dataclass(frozen=True)
class Head:
    """The checkpoint a review is computed from, in the spelling the checkpoint signed."""

    tree_size: int
    root_hash: str
    time: str
    key_id: str

    @classmethod
    def of_line(cls, found: verifier.Checkpoint) -> Head:
        return cls(found.tree_size, found.root_hash, found.time, found.key_id)

    @classmethod
    def of_signed(cls, signed: SignedCheckpoint) -> Head:
        return cls.of_line(verifier.parse_checkpoint_line(signed.to_line()))

    @property
    def moment(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "time": self.time,
            "key_id": self.key_id,
        }


def wanted(entry: dict[str, Any]) -> bool:
    """The entries a review reads: releases (made, served again, refused) and escalations."""
    action = str(entry["action"])
    return action == "release" or action.startswith("escalation.")


def budgets_as_of(period: Period, checkpoint: Head) -> dt.datetime:
    """The moment whose accounts a review shows: the period's last instant, or the
    checkpoint's time if the period was still running then."""
    return min(period.end - dt.timedelta(microseconds=1), checkpoint.moment)


class Tally:
    """The review's figures folded entry by entry (in seq order), so the public page can
    extend the tally of a period as the log grows instead of reading it all again; `compute`
    is a fresh tally over the given entries. Budget spending is kept per (partner, schema,
    ledger period), so the accounts of any policy can be read from it at the end."""

    def __init__(self, period: Period) -> None:
        self.period = period
        self.size = 0  # entries folded: every seq below this one
        self.flows: dict[tuple[str, str], dict[str, Any]] = {}
        self.steps: dict[str, Counter[str]] = {}
        self.spending = budgets.Spending(until=period.end)
        self.approved: dict[int, dict[str, Any]] = {}
        self.revoked: dict[int, dt.datetime] = {}

    def add(self, entry: dict[str, Any]) -> None:
        """Fold one normalized entry; those not `wanted` change nothing but the size."""
        self.size = max(self.size, int(entry["seq"]) + 1)
        if not wanted(entry):
            return
        micro = self.spending.add(entry)
        moment = dt.datetime.fromisoformat(entry["time"])
        schema = entry.get("schema") or ""
        if entry["action"].startswith("escalation."):
            self._escalation(entry, moment, schema)
        if not self.period.holds(moment):
            return
        if entry["action"] == "release":
            key = (entry.get("partner") or "", schema)
            flow = self.flows.setdefault(key, _flow(*key))
            if entry["outcome"] == "allowed":
                flow["releases"] += 1
                flow["epsilon_spent_micro"] += micro
            elif entry["outcome"] == "replayed":
                flow["replayed"] += 1
            elif entry["outcome"] == "denied":
                rule = entry.get("rule") or UNNAMED_RULE
                flow["refusals"][rule] = flow["refusals"].get(rule, 0) + 1
        elif (step := _ESCALATION_STEPS.get((entry["action"], entry["outcome"]))) is not None:
            self.steps.setdefault(schema, Counter())[step] += 1

    def _escalation(self, entry: dict[str, Any], moment: dt.datetime, schema: str) -> None:
        number = _escalation_id(entry["resource"])
        if number is None or entry["outcome"] != "allowed":
            return
        if entry["action"] == "escalation.revoke":
            self.revoked[number] = moment
        elif entry["action"] == "escalation.approve":
            until = _APPROVED_UNTIL.search(str(entry["reason"]))
            end = None
            if until is not None:
                end = dt.datetime.strptime(until[1], "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
            self.approved[number] = {"schema": schema, "start": moment, "end": end}

    def review(
        self,
        *,
        node_id: str,
        checkpoint: Head,
        charges: Sequence[Charge],
        policy_hash: str | None,
    ) -> dict[str, Any]:
        """The review (JSON-ready) of what was folded; folding entries at or beyond the
        checkpoint's tree size is the caller's mistake, and raises ValueError."""
        if self.size > checkpoint.tree_size:
            raise ValueError(f"entries beyond the checkpoint's {checkpoint.tree_size} folded")
        period = self.period
        return {
            "type": REVIEW_TYPE,
            "node_id": node_id,
            "period": period.as_dict(),
            "checkpoint": checkpoint.as_dict(),
            "policy_hash": policy_hash,
            "budgets_as_of": utc_text(budgets_as_of(period, checkpoint)),
            "flows": [copy.deepcopy(self.flows[key]) for key in sorted(self.flows)],
            "budgets": [
                {
                    "scope": a.scope,
                    "partner": a.partner_id,
                    "schema": a.schema_id,
                    "period": a.period,
                    "cap_micro": a.cap_micro,
                    "spent_micro": a.spent_micro,
                }
                for a in map(self.spending.account, charges)
            ],
            "escalations": [
                {"schema": schema, **{step: self.steps[schema][step] for step in _STEPS}}
                for schema in sorted(self.steps)
            ],
            "approved_escalations": self._in_force(),
        }

    def _in_force(self) -> list[dict[str, Any]]:
        """Approved escalations in force at some time in the period: id, schema, start, end
        (the end its approval set, or its revocation if earlier; None if none is stated)."""
        listed = []
        for number, seen in sorted(self.approved.items()):
            end = seen["end"]
            revoked = self.revoked.get(number)
            if revoked is not None and (end is None or revoked < end):
                end = revoked
            if seen["start"] < self.period.end and (end is None or end > self.period.start):
                listed.append(
                    {
                        "id": number,
                        "schema": seen["schema"],
                        "start": utc_text(seen["start"]),
                        "end": None if end is None else utc_text(end),
                    }
                )
        return listed


def compute(
    entries: Iterable[dict[str, Any]],
    *,
    node_id: str,
    period: Period,
    checkpoint: Head,
    charges: Sequence[Charge],
    policy_hash: str | None,
) -> dict[str, Any]:
    """The review (JSON-ready) from normalized entries in seq order; entries at or beyond
    the checkpoint's tree size are ignored."""
    tally = Tally(period)
    for entry in entries:
        if int(entry["seq"]) < checkpoint.tree_size:
            tally.add(entry)
    tally.size = checkpoint.tree_size
    return tally.review(
        node_id=node_id, checkpoint=checkpoint, charges=charges, policy_hash=policy_hash
    )


def review_of(
    entries: Iterable[dict[str, Any]],
    *,
    node_id: str,
    period: Period,
    checkpoint: Head,
    policy: NodePolicy,
) -> dict[str, Any]:
    """`compute` with the accounts the node's policy has in force at `budgets_as_of`."""
    charges = accounts_in_force(policy, budgets_as_of(period, checkpoint))
    return compute(
        entries,
        node_id=node_id,
        period=period,
        checkpoint=checkpoint,
        charges=charges,
        policy_hash=policy.hash,
    )


def _flow(partner: str, schema: str) -> dict[str, Any]:
    return {
        "partner": partner,
        "schema": schema,
        "releases": 0,
        "replayed": 0,
        "refusals": {},
        "epsilon_spent_micro": 0,
    }


def _escalation_id(resource: str) -> int | None:
    kind, _, value = resource.partition(":")
    return int(value) if kind == "escalation" and value.isdigit() else None


# --- the node's own figures, for the dashboard -------------------------------------------


def latest_head(node: Node) -> Head | None:
    """The node's latest signed checkpoint (None before its first)."""
    signed = latest_checkpoint(node.engine)
    return None if signed is None else Head.of_signed(signed)


def node_entries(node: Node, head: Head, *, since: int = 0) -> Iterator[dict[str, Any]]:
    """The node's own `wanted` entries from seq ``since`` to below the checkpoint, normalized
    as `nodes.audit.summary` reads them, found through the lookup index (which covers exactly
    the signed entries), so a page over a long log reads its releases and escalations only;
    read to the end (a generator left half-read would hold its cursor). Not re-verified: the
    node checks its log at start and before each checkpoint; a review for others is made
    from a verified log (`nodes.reviews.verified_log`)."""
    lookup = audit_lookup.c
    with reading(node.engine) as conn:
        rows = conn.execute(
            select(audit_entries.c.entry)
            .join(audit_lookup, lookup.seq == audit_entries.c.seq)
            .where(
                audit_entries.c.seq < head.tree_size,
                audit_entries.c.seq >= since,
                or_(lookup.action == "release", lookup.action.like("escalation.%")),
            )
            .order_by(audit_entries.c.seq)
            .execution_options(yield_per=5000)
        )
        for (data,) in rows:
            entry = normalize(json.loads(bytes(data)))
            if wanted(entry):
                yield entry
