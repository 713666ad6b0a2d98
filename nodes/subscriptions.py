"""Standing subscriptions: a partner's question, answered once per period.

A partner subscribes to a release query with a cadence (``week`` or ``month``; periods in
`nodes.subscription_calendar`). The first period is the one holding the query's ``since``,
or, without one, the period the subscription is made in; a query may not name ``until``.
The policy is checked when the subscription is made (on the newest period the embargo
lets out: a request it would deny is refused, nothing stored) and again at every release,
which goes through `nodes.releases.pipeline.release` like any pull.

**Made once, charged once.** Releases are made lazily, when the partner asks for a due
period. The asker first claims the period: it inserts the (subscription, period) row in a
write transaction, unique, so only one worker or replica makes it; the others poll until
the row names its release (at most ``WAIT`` seconds, then `ReleaseInProgressError`). A
claim whose release was refused (policy, budget) or failed is deleted, so the period can be
asked again; a claim older than ``CLAIM_STALE`` whose worker died is taken over. A release
that failed after its charge stays charged (the pipeline never refunds); asking again is
then a new release, as for a pull.

**It stops by itself** at its agreement's sunset (no agreement for the partner and schema
in force now or later), when the budget cannot pay a period (the pipeline's refusal), or
when the partner or an operator cancels it; every end is audited ``subscription.end`` or
``subscription.cancel``. Periods made before the end can still be fetched.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nodes.audit import log as audit_log
from nodes.audit.vocabulary import Action, Outcome, Role
from nodes.database import reading, writing
from nodes.ledger import InsufficientBudgetError
from nodes.node import Node
from nodes.releases import pipeline, store
from nodes.releases.document import Release
from nodes.releases.tables import releases
from nodes.subscription_calendar import CADENCES, Cadence, due, latest_due, period_of, weeks
from nodes.subscription_calendar import last_allowed as embargo_end
from nodes.subscription_calendar import valid as valid_period
from nodes.subscription_tables import subscription_periods, subscriptions
from policies.decision import Allowed, Denied
from policies.query import ReleaseQuery
from schemas.errors import ConflictError, InvalidInputError, NotFoundError
from schemas.periods import parse_week, week_of

#: A claimed period with no release this long after its claim was abandoned.
CLAIM_STALE: Final = dt.timedelta(minutes=2)
#: How long a request waits for a period another worker is making, in seconds.
WAIT: Final = 5.0
_POLL: Final = 0.02

EndedBy = Literal["partner", "operator", "sunset", "budget"]


@dataclass(frozen=True)
class Subscription:
    id: int
    partner_id: str
    query: ReleaseQuery
    cadence: Cadence
    first_period: str
    created_at: dt.datetime
    ended_at: dt.datetime | None
    ended_by: str | None
    end_reason: str | None

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class Forecast:
    """At this rate the budget lasts ``releases_left`` more releases of ``cost_micro``."""

    cost_micro: int
    releases_left: int
    account: str  # the account that runs out first


@dataclass(frozen=True)
class Overview:
    """A subscription with its due periods, those made, their cost and the forecast."""

    subscription: Subscription
    due: tuple[str, ...]
    made: tuple[str, ...]
    spent_micro: int
    forecast: Forecast | None  # None: the policy denies the next period


def _row(row: object) -> Subscription:
    m = row._mapping  # type: ignore[attr-defined]
    return Subscription(
        id=m["id"],
        partner_id=m["partner_id"],
        query=ReleaseQuery.model_validate_json(m["query"]),
        cadence=m["cadence"],
        first_period=m["first_period"],
        created_at=m["created_at"],
        ended_at=m["ended_at"],
        ended_by=m["ended_by"],
        end_reason=m["end_reason"],
    )


def _role_of(actor: str | None) -> Role:
    if actor is None or actor.startswith("partner:"):
        return "partner"
    return "node" if actor == "node" else "operator"


def _audit(
    conn: Connection,
    sub: Subscription,
    action: Action,
    outcome: Outcome,
    reason: str,
    now: dt.datetime,
    *,
    actor: str | None = None,
    resource: str | None = None,
    rule: str | None = None,
) -> None:
    audit_log.append(
        conn,
        actor=actor or f"partner:{sub.partner_id}",
        role=_role_of(actor),
        action=action,
        resource=resource or f"partner:{sub.partner_id}/subscription:{sub.id}",
        outcome=outcome,
        reason=reason[:2000],
        partner=sub.partner_id,
        schema=sub.query.schema_id,
        rule=rule,
        now=now,
    )


def _last_allowed(node: Node, partner_id: str, schema_id: str, now: dt.datetime) -> str | None:
    """The last week the agreement in force lets out today, or None if none is in force."""
    policy, today = node.policy, now.astimezone(dt.UTC).date()
    for agreement in policy.agreements_for(partner_id, schema_id):
        if agreement.valid_from <= today <= agreement.valid_until:
            return embargo_end(today, agreement.embargo_days, policy.week_system)
    return None


def _sunset(node: Node, partner_id: str, schema_id: str, now: dt.datetime) -> str | None:
    """Why no agreement will ever allow this again (all ended, or none), else None."""
    today = now.astimezone(dt.UTC).date()
    agreements = node.policy.agreements_for(partner_id, schema_id)
    if any(a.valid_until >= today for a in agreements):
        return None
    if not agreements:
        return f"no agreement lets {partner_id} receive {schema_id} any more"
    last = max(agreements, key=lambda a: a.valid_until)
    return f"agreement {last.id} ended on {last.valid_until} (its sunset date)"


def period_query(sub: Subscription, period: str, node: Node) -> ReleaseQuery:
    """The subscription's query with its weeks set to ``period``."""
    first, last = weeks(period, sub.cadence, node.policy.week_system)
    return sub.query.model_copy(update={"since": first, "until": last})


def create(
    node: Node, *, partner_id: str, query: ReleaseQuery, cadence: str, now: dt.datetime
) -> Overview:
    """Store a subscription the policy allows now, audited; raises InvalidInputError for a
    malformed one and PolicyDeniedError (audited) for one the policy refuses."""
    if cadence not in CADENCES:
        raise InvalidInputError.coded("subscription_cadence", cadence=cadence)
    chosen: Cadence = "week" if cadence == "week" else "month"
    if query.until is not None:
        raise InvalidInputError.coded("subscription_until")
    system = node.policy.week_system
    start = parse_week(query.since, system) if query.since else week_of(now.date(), system)
    draft = Subscription(
        0, partner_id, query, chosen, period_of(start, chosen, system), now, None, None, None
    )
    decision = _template_check(node, draft, now)
    if isinstance(decision, Denied):
        with writing(node.engine) as conn:
            _audit(
                conn,
                draft,
                "subscription.add",
                "denied",
                decision.sentence,
                now,
                resource=f"schema:{query.schema_id}",
                rule=decision.rule,
            )
        raise pipeline.PolicyDeniedError(decision)
    asked = weeks(period_of(decision.requested.since or start, chosen, system), chosen, system)
    if (decision.effective.since, decision.effective.until) != asked:
        raise InvalidInputError.coded("subscription_period_mismatch", cadence=chosen)
    with writing(node.engine) as conn:
        new_id = conn.execute(
            insert(subscriptions)
            .values(
                partner_id=partner_id,
                schema_id=query.schema_id,
                query=query.model_dump_json(),
                cadence=chosen,
                first_period=draft.first_period,
                created_at=now,
            )
            .returning(subscriptions.c.id)
        ).scalar_one()
        sub = _get(conn, int(new_id))
        _audit(
            conn,
            sub,
            "subscription.add",
            "allowed",
            f"{chosen}ly from {sub.first_period}: {decision.sentence}",
            now,
        )
    return overview(node, sub, now=now, partner_view=True)


def _template_check(node: Node, sub: Subscription, now: dt.datetime) -> Allowed | Denied:
    """The policy's decision on the newest period the embargo lets out (or, before any is
    out, on the query as asked): what each release of this subscription will meet."""
    until = _last_allowed(node, sub.partner_id, sub.query.schema_id, now)
    query = sub.query
    if until is not None:
        query = period_query(sub, latest_due(until, sub.cadence, node.policy.week_system), node)
    return pipeline.check(node, partner_id=sub.partner_id, query=query, now=now)


def _get(conn: Connection, subscription_id: int) -> Subscription:
    row = conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id)).first()
    if row is None:
        raise NotFoundError.coded("subscription_not_found", subscription=subscription_id)
    return _row(row)


def get(node: Node, subscription_id: int, *, partner_id: str | None) -> Subscription:
    """A subscription; a partner sees only its own (another's is not found)."""
    with reading(node.engine) as conn:
        sub = _get(conn, subscription_id)
    if partner_id is not None and sub.partner_id != partner_id:
        raise NotFoundError.coded("subscription_not_found", subscription=subscription_id)
    return sub


def _end(
    node: Node,
    sub: Subscription,
    by: EndedBy,
    reason: str,
    now: dt.datetime,
    *,
    actor: str | None = None,
) -> Subscription:
    """End ``sub`` once (a concurrent end wins quietly), audited."""
    action: Action = "subscription.cancel" if by in ("partner", "operator") else "subscription.end"
    with writing(node.engine) as conn:
        done = conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id == sub.id, subscriptions.c.ended_at.is_(None))
            .values(ended_at=now, ended_by=by, end_reason=reason)
        ).rowcount
        if done == 1:
            by_itself = action == "subscription.end"  # sunset, budget: the node ends it
            _audit(conn, sub, action, "allowed", reason, now, actor="node" if by_itself else actor)
        return _get(conn, sub.id)


def cancel(
    node: Node, subscription_id: int, *, partner_id: str | None, actor: str, now: dt.datetime
) -> Subscription:
    """Cancel (``partner_id`` None: an operator cancels any); cancelling an ended one changes
    nothing. Raises NotFoundError for another partner's."""
    sub = get(node, subscription_id, partner_id=partner_id)
    if not sub.active:
        return sub
    by: EndedBy = "partner" if partner_id is not None else "operator"
    return _end(node, sub, by, f"cancelled by {actor}", now, actor=actor)


def settle(node: Node, sub: Subscription, now: dt.datetime) -> Subscription:
    """End an active subscription whose agreement has reached its sunset."""
    if not sub.active:
        return sub
    why = _sunset(node, sub.partner_id, sub.query.schema_id, now)
    return sub if why is None else _end(node, sub, "sunset", why, now)


def forecast(
    node: Node, sub: Subscription, now: dt.datetime, *, partner_view: bool
) -> Forecast | None:
    """How many more releases the budget pays at the next period's cost. A partner sees
    only its own account: the global one's state would tell what other partners spent."""
    decision = _template_check(node, sub, now)
    if isinstance(decision, Denied) or decision.budget is None:
        return None
    cost = decision.cost.epsilon_micro
    lines = [
        line for line in decision.budget.lines if not partner_view or line.charge.scope == "partner"
    ]
    if cost <= 0 or not lines:
        return None
    binding = min(lines, key=lambda line: line.left_micro)
    return Forecast(cost, binding.left_micro // cost, binding.charge.describe())


def due_periods(node: Node, sub: Subscription, now: dt.datetime) -> list[str]:
    until = _last_allowed(node, sub.partner_id, sub.query.schema_id, now)
    if until is None:
        return []
    return due(sub.first_period, until, sub.cadence, node.policy.week_system)


def overview(node: Node, sub: Subscription, *, now: dt.datetime, partner_view: bool) -> Overview:
    sub = settle(node, sub, now)
    with reading(node.engine) as conn:
        rows = conn.execute(
            select(subscription_periods.c.period, releases.c.epsilon_micro)
            .join(releases, releases.c.id == subscription_periods.c.release_id)
            .where(subscription_periods.c.subscription_id == sub.id)
            .order_by(subscription_periods.c.period)
        ).all()
    made = tuple(r.period for r in rows)
    due_now = tuple(due_periods(node, sub, now)) if sub.active else ()
    ahead = forecast(node, sub, now, partner_view=partner_view) if sub.active else None
    spent = sum(int(r.epsilon_micro) for r in rows)
    return Overview(sub, tuple(sorted(set(due_now) | set(made))), made, spent, ahead)


def listing(node: Node, *, partner_id: str | None, now: dt.datetime) -> list[Overview]:
    """Every subscription (an operator), or a partner's own, oldest first."""
    query = select(subscriptions).order_by(subscriptions.c.id)
    if partner_id is not None:
        query = query.where(subscriptions.c.partner_id == partner_id)
    with reading(node.engine) as conn:
        found = [_row(r) for r in conn.execute(query).all()]
    return [overview(node, s, now=now, partner_view=partner_id is not None) for s in found]


def deliver(
    node: Node, *, partner_id: str, subscription_id: int, period: str, now: dt.datetime
) -> Release:
    """The release of a due period, made (and charged) by the first to claim it, then
    served as stored. Raises NotFoundError, ConflictError (ended), the pipeline's refusals
    (a final denial or an unpaid budget ends the subscription first), or
    ReleaseInProgressError."""
    sub = get(node, subscription_id, partner_id=partner_id)
    if not valid_period(period, sub.cadence, node.policy.week_system):
        raise NotFoundError.coded("subscription_period_not_due", subscription=sub.id, period=period)
    deadline = time.monotonic() + WAIT
    while True:
        with reading(node.engine) as conn:
            held = conn.execute(
                select(subscription_periods).where(
                    subscription_periods.c.subscription_id == sub.id,
                    subscription_periods.c.period == period,
                )
            ).first()
            stored = (
                None
                if held is None or held.release_id is None
                else store.get(conn, held.release_id)
            )
        if stored is not None:
            return _served(node, sub, period, stored, now)
        if held is None or now - held.claimed_at > CLAIM_STALE:
            sub = settle(node, sub, now)
            if not sub.active:
                raise ConflictError.coded(
                    "subscription_ended", subscription=sub.id, reason=sub.end_reason or ""
                )
            if period not in due_periods(node, sub, now):
                raise NotFoundError.coded(
                    "subscription_period_not_due", subscription=sub.id, period=period
                )
            if _claim(node, sub.id, period, None if held is None else held.claimed_at, now):
                return _make(node, sub, period, now)
        if time.monotonic() > deadline:
            raise pipeline.ReleaseInProgressError(pipeline.IN_PROGRESS)
        time.sleep(_POLL)


def _claim(
    node: Node, subscription_id: int, period: str, stale: dt.datetime | None, now: dt.datetime
) -> bool:
    """Claim a period for this worker: a new row, or an abandoned claim taken over."""
    with writing(node.engine) as conn:
        if stale is not None:
            taken = conn.execute(
                update(subscription_periods)
                .where(
                    subscription_periods.c.subscription_id == subscription_id,
                    subscription_periods.c.period == period,
                    subscription_periods.c.release_id.is_(None),
                    subscription_periods.c.claimed_at == stale,
                )
                .values(claimed_at=now)
            ).rowcount
            return bool(taken == 1)
        upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        claimed = conn.execute(
            upsert(subscription_periods)
            .values(subscription_id=subscription_id, period=period, claimed_at=now)
            .on_conflict_do_nothing(index_elements=["subscription_id", "period"])
            .returning(subscription_periods.c.id)
        ).scalar()
        return claimed is not None


def _unclaim(node: Node, subscription_id: int, period: str) -> None:
    with writing(node.engine) as conn:
        conn.execute(
            delete(subscription_periods).where(
                subscription_periods.c.subscription_id == subscription_id,
                subscription_periods.c.period == period,
                subscription_periods.c.release_id.is_(None),
            )
        )


def _make(node: Node, sub: Subscription, period: str, now: dt.datetime) -> Release:
    query = period_query(sub, period, node)
    try:
        made = pipeline.release(node, partner_id=sub.partner_id, query=query, now=now)
    except InsufficientBudgetError as exc:
        _unclaim(node, sub.id, period)
        _end(node, sub, "budget", f"the budget cannot pay for {period}: {exc}", now)
        raise
    except pipeline.PolicyDeniedError:
        _unclaim(node, sub.id, period)
        settle(node, sub, now)
        raise
    except BaseException:
        _unclaim(node, sub.id, period)
        raise
    with writing(node.engine) as conn:
        conn.execute(
            update(subscription_periods)
            .where(
                subscription_periods.c.subscription_id == sub.id,
                subscription_periods.c.period == period,
            )
            .values(release_id=made.id, made_at=now)
        )
        _audit(
            conn,
            sub,
            "subscription.fetch",
            "allowed",
            f"{period}: release {made.id} made",
            now,
            resource=_period_resource(sub, period),
        )
    return made


def _served(
    node: Node, sub: Subscription, period: str, stored: store.StoredRelease, now: dt.datetime
) -> Release:
    """A period made before: the same release again, charged nothing, audited."""
    decision = pipeline.check(
        node, partner_id=sub.partner_id, query=period_query(sub, period, node), now=now
    )
    lines = decision.budget.lines if isinstance(decision, Allowed) and decision.budget else ()
    with writing(node.engine) as conn:
        _audit(
            conn,
            sub,
            "subscription.fetch",
            "replayed",
            f"{period}: release {stored.id} again, nothing charged",
            now,
            resource=_period_resource(sub, period),
        )
    return Release.of(
        stored, node_id=node.settings.node_id, budget=lines, charged_micro=0, cached=True
    )


def _period_resource(sub: Subscription, period: str) -> str:
    return f"partner:{sub.partner_id}/subscription:{sub.id}/period:{period}"


def as_document(view: Overview) -> dict[str, object]:
    """JSON-ready: what a partner (or operator) is shown of a subscription."""
    sub, ahead = view.subscription, view.forecast
    return {
        "id": sub.id,
        "partner_id": sub.partner_id,
        "cadence": sub.cadence,
        "query": json.loads(sub.query.model_dump_json()),
        "first_period": sub.first_period,
        "created_at": sub.created_at.isoformat(),
        "active": sub.active,
        "ended_at": None if sub.ended_at is None else sub.ended_at.isoformat(),
        "ended_by": sub.ended_by,
        "end_reason": sub.end_reason,
        "due": list(view.due),
        "made": list(view.made),
        "epsilon_spent_micro": view.spent_micro,
        "forecast": None
        if ahead is None
        else {
            "releases_left": ahead.releases_left,
            "cost_micro": ahead.cost_micro,
            "account": ahead.account,
            "sentence": f"at this rate the budget lasts {ahead.releases_left} more releases",
        },
    }
