"""The pull path, minus transport: policy, budget, exact aggregate, noise, storage, audit.

``release`` runs these steps, and their order is the privacy argument:

1. **Decide** (`policies.decision`): deny by default. A denial is audited in its own small
   write transaction and raised as `PolicyDeniedError` (403) with the reasons.
2. **Read**: the schema's data version, the release cache and the ledger, then, on a miss
   that the budget can pay for, the exact integer aggregate over the full key set
   (`nodes.aggregates`). An identical effective query over unchanged data returns the
   stored release and charges nothing, so asking again never lets a partner average the
   noise away. A partner out of budget is refused here, before any data is scanned.
3. **Reserve** in one write transaction: the release row, which claims the partner's
   slot for the cache key (`nodes.releases.store`), then the partner and global ledger
   accounts (`nodes.ledger`), and the audit entry. It commits *before* any noise is drawn.
   If an account cannot pay, nothing is charged, the refusal is audited, and
   `InsufficientBudgetError` (429) says what is left.
4. **Noise** each measure with its OpenDP mechanism, then post-process (clamp, suppress).
   From here on the budget is spent: a failure is never refunded (the release gives up
   its slot, so the question can be asked, and paid for, again).
5. **Store** the published cells on the release row.

Identical requests racing each other buy one release: the slot is unique per partner and
cache key, so a request that finds it claimed charges nothing and waits (polling, at most
``IN_FLIGHT_WAIT`` seconds) for the stored release, which it then serves like any cached
one; past the wait it raises `ReleaseInProgressError` (503: ask again). A slot held by a
reservation older than ``ABANDONED_AFTER`` (its worker died before storing the cells) is
given up by the next identical request.

``check`` is step 1 plus a look at the ledger: what ``policy check`` shows; it spends
nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import time
from typing import Any, Final, NoReturn

import rfc8785
from sqlalchemy import Connection

from nodes import aggregates, escalations, ledger
from nodes.access import ForbiddenError
from nodes.audit import log as audit_log
from nodes.audit.vocabulary import Outcome
from nodes.database import reading, writing
from nodes.ledger import InsufficientBudgetError
from nodes.node import Node
from nodes.releases import store
from nodes.releases.document import Release
from policies import escalation, privacy
from policies.accounts import BudgetLine
from policies.decision import Allowed, Decision, Denied, ReleaseRequest, decide, decide_with_keys
from policies.escalation import Grant
from policies.keyspace import KeySpace
from policies.privacy import Counts
from policies.query import ReleaseQuery
from schemas.errors import ExchangeError, NotFoundError

__all__ = [
    "InsufficientBudgetError",
    "PolicyDeniedError",
    "Release",
    "ReleaseInProgressError",
    "check",
    "release",
]

_REASON_LIMIT = 2048  # the audit log's limit for a reason
#: How long an identical request waits for the release in flight, in seconds: a release
#: takes well under a second, and the wait stays under a peer client's read timeout.
IN_FLIGHT_WAIT: Final = 5.0
#: A slot still reserved this long after its release was asked for was abandoned.
ABANDONED_AFTER: Final = dt.timedelta(minutes=1)
_POLL_SECONDS: Final = 0.02


class ReleaseInProgressError(ExchangeError):
    """An identical release is still being computed; nothing was charged: ask again."""


class PolicyDeniedError(ForbiddenError):
    """The policy refuses the request; ``decision`` says which rule and why."""

    def __init__(self, decision: Denied) -> None:
        self.decision = decision
        self.problem_extra = {
            "rule": decision.rule,
            "reasons": list(decision.reasons),
            "policy_hash": decision.policy_hash,
        }
        super().__init__(decision.sentence)


def check(
    node: Node,
    *,
    partner_id: str,
    query: ReleaseQuery,
    now: dt.datetime,
    escalations: bool = True,
    assume: Grant | None = None,
) -> Decision:
    """The decision, its effective query and cost, and the budget it would leave (nothing
    if a stored release already answers it). Spends and records nothing.

    ``escalations=False`` decides on the policy alone, without the escalations in force;
    ``assume`` decides as if that (proposed) escalation were in force too.
    """
    policy = node.policy_at(now) if escalations else node.policy
    if assume is not None:
        policy = escalation.effective(policy, [assume])
    decision = decide(ReleaseRequest(partner_id=partner_id, query=query), policy, now)
    if isinstance(decision, Denied):
        return decision
    with reading(node.engine) as conn:
        version = aggregates.data_version(conn, decision.schema_id)
        key = store.cache_key(decision.effective, version, decision.escalation)
        cached = store.cached_id(conn, partner_id=partner_id, key=key)
        cost = 0 if cached is not None else decision.cost.epsilon_micro
        outlook = ledger.outlook(conn, decision.charges, cost)
    budget = outlook.model_copy(update={"cached_release": cached})
    return decision.model_copy(update={"budget": budget})


def dry_run(
    node: Node,
    *,
    partner_id: str,
    query: ReleaseQuery,
    now: dt.datetime,
    escalation_id: int | None = None,
) -> tuple[Decision, dict[str, Any]]:
    """What ``policy check`` shows: the decision and its summary; when an escalation (in
    force, or ``escalation_id`` as if approved now) made a difference, the summary adds
    what the policy alone would say (``without_escalation``). Spends nothing."""
    assume = None
    if escalation_id is not None:
        found = escalations.get(node.engine, escalation_id)
        if found is None:
            raise NotFoundError.coded("escalation_not_found", escalation=escalation_id)
        assume = found.assumed(now)
    decision = check(node, partner_id=partner_id, query=query, now=now, assume=assume)
    summary = decision.summary()
    if summary["escalation"] is not None:
        plain = check(node, partner_id=partner_id, query=query, now=now, escalations=False)
        shown = plain.summary()
        summary["without_escalation"] = {
            k: shown[k] for k in ("allowed", "rule", "reasons", "cost", "cells")
        }
    return decision, summary


def release(node: Node, *, partner_id: str, query: ReleaseQuery, now: dt.datetime) -> Release:
    """Answer a partner's query with a differentially private release (see module doc).

    Raises PolicyDeniedError (ForbiddenError) or InsufficientBudgetError
    (BudgetExhaustedError); both are audited before they are raised. Raises
    ReleaseInProgressError, charging nothing, if an identical release was still being
    computed after ``IN_FLIGHT_WAIT`` seconds.
    """
    request = ReleaseRequest(partner_id=partner_id, query=query)
    decided = decide_with_keys(request, node.policy_at(now), now)
    if isinstance(decided[0], Denied):
        _refuse(node, decided[0], PolicyDeniedError(decided[0]), now)
    decision, space = decided  # allowed, with the key set it was priced on
    effective, cost = decision.effective, decision.cost
    deadline = time.monotonic() + IN_FLIGHT_WAIT
    while True:
        if time.monotonic() > deadline:
            raise ReleaseInProgressError(IN_PROGRESS)
        with reading(node.engine) as conn:
            # The version is read before the data: under PostgreSQL's READ COMMITTED a push
            # may land in between, and then the release is keyed to older data than it saw
            # (never served stale), not the other way round.
            version = aggregates.data_version(conn, effective.schema_id)
            key = store.cache_key(effective, version, decision.escalation)
            cached = store.find_cached(conn, partner_id=partner_id, key=key)
            held = None if cached else store.slot(conn, partner_id=partner_id, key=key)
            short = (
                None
                if cached or held
                else ledger.outlook(conn, decision.charges, cost.epsilon_micro)
            )
            shortfall = None if short is None else short.shortfall()
            # Scan the data only for a release that is neither stored nor in flight, and
            # that the budget can pay.
            scan = cached is None and held is None and shortfall is None
            exact = aggregates.exact(conn, space, effective.measures) if scan else None
        if cached is not None:
            return _repeat(node, decision, cached, now)
        if held is not None:
            _await(node, held, partner_id=partner_id, key=key, deadline=deadline, now=now)
            continue
        if shortfall is not None:
            _refuse(node, decision, InsufficientBudgetError(shortfall, cost.epsilon_micro), now)
        assert exact is not None
        reserved = _reserve(node, decision, key=key, data_version=version, now=now)
        if reserved is not None:
            return _draw(node, decision, space, exact, *reserved, now=now)
        # An identical request claimed the slot since we looked: wait for its release.


def _reserve(
    node: Node, decision: Allowed, *, key: str, data_version: int, now: dt.datetime
) -> tuple[int, tuple[BudgetLine, ...]] | None:
    """Claim the slot, charge the ledger and audit, in one transaction (step 3).

    Returns the release id and the accounts after the charge, or None, charging nothing,
    if an identical release holds the slot. Raises InsufficientBudgetError, audited.
    """
    try:
        with writing(node.engine) as conn:
            release_id = store.insert_reserved(
                conn, decision=decision, cache_key=key, data_version=data_version, now=now
            )
            if release_id is None:
                return None  # nothing written: the transaction ends empty
            lines = ledger.reserve(conn, decision.charges, decision.cost.epsilon_micro, now)
            charged = decision.cost.epsilon_micro
            resource = f"release:{release_id}"
            _audit(conn, decision, "allowed", resource, decision.sentence, now, charged)
    except InsufficientBudgetError as exc:  # another release took the budget meanwhile
        _refuse(node, decision, exc, now)
    return release_id, lines


def _draw(
    node: Node,
    decision: Allowed,
    space: KeySpace,
    exact: dict[str, Counts],
    release_id: int,
    lines: tuple[BudgetLine, ...],
    *,
    now: dt.datetime,
) -> Release:
    """Noise and store a reserved release (steps 4 and 5). The budget is committed:
    privacy is spent from here on, whatever happens next; on failure the release gives
    up its slot (it stays charged) so that the question can be asked again."""
    effective, cost = decision.effective, decision.cost
    try:
        values = _published(decision, privacy.noisy(cost, exact))
        with writing(node.engine) as conn:
            store.complete(conn, release_id, axes=space.axes, values=values, now=now)
    except BaseException:
        with contextlib.suppress(Exception):  # else it is given up once abandoned
            _give_up(node, release_id)
        raise
    stored = store.StoredRelease(
        id=release_id,
        partner_id=decision.partner_id,
        schema_id=effective.schema_id,
        query=effective,
        axes=space.axes,
        values=values,
        noise=cost.measures,
        mechanism=cost.mechanism,
        delta=cost.delta,
        epsilon_micro=cost.epsilon_micro,
        policy_hash=decision.policy_hash,
        created_at=now,
        escalation=decision.escalation,
    )
    node_id = node.settings.node_id
    return Release.of(
        stored, node_id=node_id, budget=lines, charged_micro=cost.epsilon_micro, cached=False
    )


def _published(decision: Allowed, noisy: dict[str, Counts]) -> store.Values:
    """Post-processing: clamp, then withhold the values under the suppression threshold."""
    values: store.Values = {}
    for measure, vector in noisy.items():
        published, suppressed = privacy.publishable(vector, decision.suppress_below)
        cells: list[int | None] = published.tolist()
        for i in suppressed.nonzero()[0].tolist():
            cells[i] = None
        values[measure] = cells
    return values


IN_PROGRESS = (
    "an identical request is still being computed; ask again in a moment: it will be "
    "answered with the same release, and nothing was charged for this one"
)


def _await(
    node: Node,
    held: store.Slot,
    *,
    partner_id: str,
    key: str,
    deadline: float,
    now: dt.datetime,
) -> None:
    """Return once the identical release holding the slot is stored, or gave the slot up.

    A slot reserved ``ABANDONED_AFTER`` before ``now`` is given up here: its worker died
    between the charge and the cells. Raises ReleaseInProgressError past ``deadline``.
    """
    if now - held.created_at > ABANDONED_AFTER:
        _give_up(node, held.release_id)
        return
    while time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        with reading(node.engine) as conn:
            found = store.slot(conn, partner_id=partner_id, key=key)
        if found is None or found.released or found.release_id != held.release_id:
            return
    raise ReleaseInProgressError(IN_PROGRESS)


def _give_up(node: Node, release_id: int) -> None:
    """Free a charged release's slot, so that the question can be asked again."""
    with writing(node.engine) as conn:
        store.give_up_slot(conn, release_id)


def _repeat(
    node: Node, decision: Allowed, cached: store.StoredRelease, now: dt.datetime
) -> Release:
    """Serve a stored release again: the same noise, nothing charged, but audited."""
    with writing(node.engine) as conn:
        lines = ledger.lines(conn, decision.charges)
        reason = f"repeated release {cached.id} from the cache, nothing charged; "
        _audit(conn, decision, "replayed", f"release:{cached.id}", reason + decision.sentence, now)
    node_id = node.settings.node_id
    return Release.of(cached, node_id=node_id, budget=lines, charged_micro=0, cached=True)


def _refuse(node: Node, decision: Decision, error: ExchangeError, now: dt.datetime) -> NoReturn:
    """Audit a refusal, with the rule that refused it, in its own small transaction, then
    raise it: an allowed decision the budget cannot pay is refused by ``budget``."""
    resource = f"schema:{decision.schema_id}"
    rule = "budget" if isinstance(error, InsufficientBudgetError) else decision.rule
    with writing(node.engine) as conn:
        _audit(conn, decision, "denied", resource, str(error), now, rule=rule)
    raise error


def _audit(
    conn: Connection,
    decision: Decision,
    outcome: Outcome,
    resource: str,
    reason: str,
    now: dt.datetime,
    charged: int = 0,
    *,
    rule: str | None = None,
) -> None:
    """The one place releases write to the audit log, inside the caller's transaction;
    ``charged`` is the budget this act spent, in micro-epsilon; ``rule`` what refused it."""
    digest = hashlib.sha256(rfc8785.dumps(decision.requested.model_dump(mode="json"))).hexdigest()
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 1] + "…"
    audit_log.append(
        conn,
        actor=f"partner:{decision.partner_id}",
        role="partner",
        action="release",
        resource=resource,
        outcome=outcome,
        reason=reason,
        partner=decision.partner_id,
        schema=decision.schema_id,
        epsilon_micro=charged,
        rule=rule,
        policy_hash=decision.policy_hash,
        request_digest=f"sha256:{digest}",
        now=now,
    )
