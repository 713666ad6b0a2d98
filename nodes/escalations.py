"""Emergency escalations: proposed by one operator, in force once a second approves them.

The two-person rule is held three times: here (the approver's token is not the
proposer's), in the database (a CHECK constraint), and by authentication (a revoked token
can neither propose nor approve). An approved escalation is in force from its approval
until ``ends_at``; every worker and replica reads the escalations in force with each
decision (`in_force`, one indexed query), so an approval, a revocation and an end time
take effect everywhere at once, with no cache to expire. A proposal that nobody approves
within ``PROPOSAL_LIFETIME`` lapses.

Every step is an audit entry naming both people: ``escalation.propose`` (allowed, or
denied with the red line or limit that refused it), ``escalation.approve`` (allowed, or
denied: self-approval, lapsed, withdrawn, refused by the policy), ``escalation.revoke``,
and ``escalation.expire`` (the node, once the end time or a lapse has passed: `close_ended`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    RowMapping,
    Select,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from nodes.access import ForbiddenError
from nodes.audit import log as audit_log
from nodes.database import reading, writing
from nodes.tables import UTCDateTime, metadata, tokens
from nodes.tokens import TokenRecord
from policies.escalation import Grant, Proposal, Widening, check, find_agreement
from policies.node_policy import NodePolicy
from schemas.errors import ConflictError, Message, NotFoundError, Param

#: A proposal not approved within this time lapses: a crisis decision is made in hours.
PROPOSAL_LIFETIME = dt.timedelta(hours=24)
_REASON_LIMIT = 2048

escalations = Table(
    "escalations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", String(64), nullable=False),
    Column("schema_id", String(64), nullable=False),
    Column("partners", Text, nullable=False),  # JSON array of node ids
    Column("widening", Text, nullable=False),  # JSON: policies.escalation.Widening
    Column("hours", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("policy_hash", String(80), nullable=False),  # the policy it was proposed under
    Column("proposed_by", Integer, ForeignKey("tokens.id"), nullable=False),
    Column("proposed_at", UTCDateTime, nullable=False),
    Column("approved_by", Integer, ForeignKey("tokens.id"), nullable=True),
    Column("approved_at", UTCDateTime, nullable=True),
    Column("ends_at", UTCDateTime, nullable=True),  # set on approval: approved_at + hours
    Column("revoked_by", Integer, ForeignKey("tokens.id"), nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),  # when its end or lapse was audited
    CheckConstraint(
        "approved_by IS NULL OR approved_by <> proposed_by", name="ck_escalations_two_people"
    ),
    Index("ix_escalations_ends_at", "ends_at"),
)

Status = Literal["proposed", "in force", "ended", "revoked", "lapsed"]


class EscalationRefusedError(ForbiddenError):
    """The policy, or the two-person rule, refuses this step; ``reasons`` say why, in the
    policy's own sentences (as decisions do), ``rule`` names the red line or agreement."""

    def __init__(
        self, reasons: tuple[str, ...], rule: str | None = None, *, message: Message | None = None
    ) -> None:
        self.reasons = reasons
        self.rule = rule
        self.problem_extra = {"reasons": list(reasons), **({"rule": rule} if rule else {})}
        shown = "; ".join(reasons)
        super().__init__(message or Message.of("escalation_refused", reasons=shown))

    @classmethod
    def of(cls, code: str, **params: Param) -> EscalationRefusedError:
        message = Message.of(code, **params)
        return cls((message.english(),), message=message)


@dataclass(frozen=True)
class Escalation:
    id: int
    agreement_id: str
    schema_id: str
    partners: tuple[str, ...]
    widening: Widening
    hours: int
    reason: str
    policy_hash: str
    proposed_by: str  # "token:NAME"
    proposed_at: dt.datetime
    approved_by: str | None
    approved_at: dt.datetime | None
    ends_at: dt.datetime | None
    revoked_by: str | None
    revoked_at: dt.datetime | None

    def status(self, now: dt.datetime) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        if self.ends_at is not None:
            return "in force" if now < self.ends_at else "ended"
        return "proposed" if now < self.lapses_at else "lapsed"

    @property
    def lapses_at(self) -> dt.datetime:
        return self.proposed_at + PROPOSAL_LIFETIME

    def grant(self) -> Grant:
        assert self.approved_by and self.approved_at and self.ends_at
        return Grant(
            id=self.id,
            agreement_id=self.agreement_id,
            partners=self.partners,
            widening=self.widening,
            proposed_by=self.proposed_by,
            approved_by=self.approved_by,
            starts_at=self.approved_at,
            ends_at=self.ends_at,
        )

    def assumed(self, now: dt.datetime) -> Grant:
        """As if in force from ``now``: for the policy's dry run of a proposal."""
        if self.ends_at is not None:
            return self.grant()
        return Grant(
            id=self.id,
            agreement_id=self.agreement_id,
            partners=self.partners,
            widening=self.widening,
            proposed_by=self.proposed_by,
            approved_by="(not approved yet)",
            starts_at=now,
            ends_at=now + dt.timedelta(hours=self.hours),
        )

    def summary(self, now: dt.datetime) -> dict[str, object]:
        """JSON-ready, for the API and ``exchange escalation list --json``."""

        def when(moment: dt.datetime | None) -> str | None:
            return None if moment is None else moment.astimezone(dt.UTC).isoformat()

        return {
            "id": self.id,
            "status": self.status(now),
            "agreement": self.agreement_id,
            "schema": self.schema_id,
            "partners": list(self.partners),
            "widens": self.widening.model_dump(mode="json", exclude_defaults=True),
            "widens_text": self.widening.describe(),
            "hours": self.hours,
            "reason": self.reason,
            "policy_hash": self.policy_hash,
            "proposed_by": self.proposed_by,
            "proposed_at": when(self.proposed_at),
            "approved_by": self.approved_by,
            "approved_at": when(self.approved_at),
            "ends_at": when(self.ends_at),
            "lapses_at": None if self.ends_at or self.revoked_at else when(self.lapses_at),
            "revoked_by": self.revoked_by,
            "revoked_at": when(self.revoked_at),
        }


def propose(
    engine: Engine,
    policy: NodePolicy,
    *,
    operator: TokenRecord,
    proposal: Proposal,
    reason: str,
    now: dt.datetime,
) -> Escalation:
    """Record a proposal; nothing changes until a second operator approves it.

    Raises EscalationRefusedError (audited) naming every red line or limit it would cross.
    """
    _require_operator(operator)
    agreement = find_agreement(policy, proposal.agreement_id)
    partners = proposal.partners or (agreement.partners if agreement else ())
    proposal = Proposal(proposal.agreement_id, tuple(partners), proposal.widening, proposal.hours)
    refusals = check(policy, proposal, now)
    actor = f"token:{operator.name}"
    if refusals:
        rule = _rule_of(refusals[0], proposal.agreement_id)
        with writing(engine) as conn:
            _audit(
                conn,
                "escalation.propose",
                "denied",
                actor,
                "escalation:proposal",
                refusals,
                now,
                rule=rule,
                schema=agreement.schema_id if agreement is not None else None,
            )
        raise EscalationRefusedError(refusals, rule)
    assert agreement is not None
    with writing(engine) as conn:
        new_id = conn.execute(
            escalations.insert()
            .values(
                agreement_id=agreement.id,
                schema_id=agreement.schema_id,
                partners=json.dumps(list(partners)),
                widening=proposal.widening.model_dump_json(exclude_defaults=True),
                hours=proposal.hours,
                reason=reason,
                policy_hash=policy.hash,
                proposed_by=operator.id,
                proposed_at=now,
            )
            .returning(escalations.c.id)
        ).scalar_one()
        said = (
            f"proposed escalation {new_id} of agreement {agreement.id} for "
            f"{', '.join(partners)}: {proposal.widening.describe()}, for {proposal.hours} hours; "
            f"awaiting a second operator's approval; because: {reason}",
        )
        _audit(
            conn,
            "escalation.propose",
            "allowed",
            actor,
            f"escalation:{new_id}",
            said,
            now,
            schema=agreement.schema_id,
        )
        found = _get(conn, int(new_id))
    assert found is not None
    return found


def approve(
    engine: Engine,
    policy: NodePolicy,
    *,
    operator: TokenRecord,
    escalation_id: int,
    now: dt.datetime,
) -> Escalation:
    """The second operator's approval: the escalation is in force from ``now``.

    Refused (and audited) when the approver proposed it, when it was withdrawn, lapsed or
    approved already, when the current policy no longer allows it, or while another
    escalation of the same agreement is in force for one of its partners.
    """
    _require_operator(operator)
    actor = f"token:{operator.name}"
    resource = f"escalation:{escalation_id}"
    with writing(engine) as conn:
        found = _get(conn, escalation_id)
        if found is None:
            raise NotFoundError.coded("escalation_not_found", escalation=escalation_id)
        refusal = _approval_refused(conn, policy, found, operator, now)
        if refusal is None:
            ends = now + dt.timedelta(hours=found.hours)
            done = conn.execute(
                update(escalations)
                .where(
                    escalations.c.id == escalation_id,
                    escalations.c.approved_at.is_(None),
                    escalations.c.revoked_at.is_(None),
                )
                .values(approved_by=operator.id, approved_at=now, ends_at=ends)
            ).rowcount
            if done == 1:
                said = (
                    f"approved escalation {escalation_id} proposed by {found.proposed_by}: "
                    f"agreement {found.agreement_id} for {', '.join(found.partners)} widens "
                    f"{found.widening.describe()} until {ends.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC",
                )
                _audit(
                    conn,
                    "escalation.approve",
                    "allowed",
                    actor,
                    resource,
                    said,
                    now,
                    schema=found.schema_id,
                )
                approved = _get(conn, escalation_id)
                assert approved is not None
                return approved
            refusal = ConflictError.coded("escalation_not_a_proposal", escalation=escalation_id)
    with writing(engine) as conn:
        reasons = (
            refusal.reasons if isinstance(refusal, EscalationRefusedError) else (str(refusal),)
        )
        rule = refusal.rule if isinstance(refusal, EscalationRefusedError) else None
        _audit(
            conn,
            "escalation.approve",
            "denied",
            actor,
            resource,
            reasons,
            now,
            rule=rule,
            schema=found.schema_id,
        )
    raise refusal


def _approval_refused(
    conn: Connection, policy: NodePolicy, found: Escalation, operator: TokenRecord, now: dt.datetime
) -> EscalationRefusedError | ConflictError | None:
    if operator.id == _proposer_id(conn, found.id):
        return EscalationRefusedError.of(
            "escalation_self_approval", proposer=found.proposed_by, escalation=found.id
        )
    status = found.status(now)
    if status == "lapsed":
        return EscalationRefusedError.of(
            "escalation_lapsed", escalation=found.id, lapsed=_minute(found.lapses_at)
        )
    if status != "proposed":
        return ConflictError.coded("escalation_not_a_proposal", escalation=found.id)
    proposal = Proposal(found.agreement_id, found.partners, found.widening, found.hours)
    refusals = check(policy, proposal, now)
    if refusals:
        return EscalationRefusedError(refusals, _rule_of(refusals[0], found.agreement_id))
    for other in in_force(conn, now):
        shared = sorted(set(other.partners) & set(found.partners))
        if other.agreement_id == found.agreement_id and shared:
            return ConflictError.coded(
                "escalation_overlap",
                other=other.id,
                agreement=other.agreement_id,
                partner=shared[0],
                until=_minute(other.ends_at),
            )
    return None


def revoke(
    engine: Engine, *, operator: TokenRecord, escalation_id: int, now: dt.datetime
) -> Escalation:
    """End an escalation (or withdraw a proposal) at once. Any operator may: it narrows."""
    _require_operator(operator)
    with writing(engine) as conn:
        found = _get(conn, escalation_id)
        if found is None:
            raise NotFoundError.coded("escalation_not_found", escalation=escalation_id)
        status = found.status(now)
        if status not in ("proposed", "in force"):
            raise ConflictError.coded("escalation_not_revocable", escalation=escalation_id)
        conn.execute(
            update(escalations)
            .where(escalations.c.id == escalation_id)
            .values(revoked_by=operator.id, revoked_at=now, closed_at=now)
        )
        what = "withdrew the proposal of" if status == "proposed" else "revoked"
        approved = f", approved by {found.approved_by}" if found.approved_by else ""
        said = (
            f"{what} escalation {escalation_id} of agreement {found.agreement_id} "
            f"(proposed by {found.proposed_by}{approved})",
        )
        actor = f"token:{operator.name}"
        _audit(
            conn,
            "escalation.revoke",
            "allowed",
            actor,
            f"escalation:{escalation_id}",
            said,
            now,
            schema=found.schema_id,
        )
        revoked = _get(conn, escalation_id)
    assert revoked is not None
    return revoked


def in_force(conn: Connection, now: dt.datetime) -> list[Grant]:
    """The approved escalations in force at ``now``: read with every decision."""
    rows = conn.execute(
        _selected().where(
            escalations.c.ends_at > now,
            escalations.c.approved_at <= now,
            escalations.c.revoked_at.is_(None),
        )
    ).all()
    return [_escalation(row._mapping).grant() for row in rows]


def close_ended(engine: Engine, now: dt.datetime) -> int:
    """Audit the escalations that ended, and the proposals that lapsed, since last time.

    Their end took effect at its time whatever this does; this writes the entry that says
    so (``escalation.expire``, by the node). Safe on many workers: each is closed once.
    """
    ended = and_(escalations.c.ends_at <= now, escalations.c.revoked_at.is_(None))
    lapsed = and_(
        escalations.c.approved_at.is_(None),
        escalations.c.revoked_at.is_(None),
        escalations.c.proposed_at <= now - PROPOSAL_LIFETIME,
    )
    closed = 0
    with writing(engine) as conn:
        rows = conn.execute(
            _selected().where(escalations.c.closed_at.is_(None), or_(ended, lapsed))
        ).all()
        for row in rows:
            found = _escalation(row._mapping)
            done = conn.execute(
                update(escalations)
                .where(escalations.c.id == found.id, escalations.c.closed_at.is_(None))
                .values(closed_at=now)
            ).rowcount
            if done != 1:
                continue
            if found.ends_at is not None:
                said = (
                    f"escalation {found.id} of agreement {found.agreement_id} ended at its end "
                    f"time {found.ends_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC (proposed by "
                    f"{found.proposed_by}, approved by {found.approved_by})",
                )
            else:
                said = (
                    f"the proposal of escalation {found.id} by {found.proposed_by} lapsed: "
                    f"no second operator approved it within {PROPOSAL_LIFETIME.total_seconds() / 3600:g} hours",
                )
            _audit(
                conn,
                "escalation.expire",
                "allowed",
                "node",
                f"escalation:{found.id}",
                said,
                now,
                schema=found.schema_id,
            )
            closed += 1
    return closed


def listing(engine: Engine) -> list[Escalation]:
    with reading(engine) as conn:
        rows = conn.execute(_selected().order_by(escalations.c.id.desc())).all()
    return [_escalation(row._mapping) for row in rows]


def get(engine: Engine, escalation_id: int) -> Escalation | None:
    with reading(engine) as conn:
        return _get(conn, escalation_id)


def _require_operator(operator: TokenRecord) -> None:
    if operator.role != "operator" or operator.revoked_at is not None:
        raise ForbiddenError.coded(
            "escalation_operators_only", token=operator.name, role=operator.role
        )


def _minute(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _rule_of(reason: str, agreement_id: str) -> str:
    """The audit entry's rule: the red line a refusal names, else the agreement."""
    if reason.startswith("red line "):
        return "red line " + reason.removeprefix("red line ").split(":", 1)[0]
    return (
        f"agreement {agreement_id}"
        if not reason.startswith("the policy has no")
        else "deny by default"
    )


def _audit(
    conn: Connection,
    action: Literal[
        "escalation.propose", "escalation.approve", "escalation.revoke", "escalation.expire"
    ],
    outcome: Literal["allowed", "denied"],
    actor: str,
    resource: str,
    reasons: tuple[str, ...],
    now: dt.datetime,
    *,
    rule: str | None = None,
    schema: str | None = None,
) -> None:
    """One escalation entry; ``schema`` is the escalated agreement's, so reviews can count
    escalations per schema without reading ``reason``."""
    reason = "; ".join(reasons)
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 1] + "…"
    audit_log.append(
        conn,
        actor=actor,
        role="node" if actor == "node" else "operator",
        action=action,
        resource=resource,
        outcome=outcome,
        reason=reason,
        rule=rule,
        schema=schema,
        now=now,
    )


_proposer = aliased(tokens, name="proposer")
_approver = aliased(tokens, name="approver")
_revoker = aliased(tokens, name="revoker")


def _selected() -> Select[Any]:
    return (
        select(
            escalations,
            _proposer.c.name.label("proposer_name"),
            _approver.c.name.label("approver_name"),
            _revoker.c.name.label("revoker_name"),
        )
        .join(_proposer, _proposer.c.id == escalations.c.proposed_by)
        .outerjoin(_approver, _approver.c.id == escalations.c.approved_by)
        .outerjoin(_revoker, _revoker.c.id == escalations.c.revoked_by)
    )


def _get(conn: Connection, escalation_id: int) -> Escalation | None:
    row = conn.execute(_selected().where(escalations.c.id == escalation_id)).first()
    return None if row is None else _escalation(row._mapping)


def _proposer_id(conn: Connection, escalation_id: int) -> int:
    return int(
        conn.execute(
            select(escalations.c.proposed_by).where(escalations.c.id == escalation_id)
        ).scalar_one()
    )


def _escalation(row: RowMapping) -> Escalation:
    get_ = row.__getitem__

    def who(name: str | None) -> str | None:
        return None if name is None else f"token:{name}"

    return Escalation(
        id=int(get_("id")),
        agreement_id=get_("agreement_id"),
        schema_id=get_("schema_id"),
        partners=tuple(json.loads(get_("partners"))),
        widening=Widening.model_validate_json(get_("widening")),
        hours=int(get_("hours")),
        reason=get_("reason"),
        policy_hash=get_("policy_hash"),
        proposed_by=f"token:{get_('proposer_name')}",
        proposed_at=get_("proposed_at"),
        approved_by=who(get_("approver_name")),
        approved_at=get_("approved_at"),
        ends_at=get_("ends_at"),
        revoked_by=who(get_("revoker_name")),
        revoked_at=get_("revoked_at"),
    )
