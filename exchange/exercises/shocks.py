"""The network and policy shocks: a pull round, a node offline, key rotation and revocation,
a sunset, an exhausted budget, an emergency escalation. One function per shock; each acts
through the product's own paths and adds one Check per expectation.
"""

from __future__ import annotations

import datetime as dt

from exchange.exercises import scenario as sc
from exchange.exercises.context import Exercise, Outcome
from exchange.exercises.federation import OPERATORS, ExerciseNode, agreement_id, policy_yaml
from exchange.exercises.results import Checks
from nodes import key_rotation, keys, peers
from nodes.identity import load_current, public_key_text


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _all(outcomes: list[Outcome], ending: str) -> bool:
    return bool(outcomes) and all(o.ending == ending for o in outcomes)


def _said(outcomes: list[Outcome]) -> str:
    return "; ".join(o.summary() for o in outcomes) or "no pull was made"


def _decisions(outcomes: list[Outcome]) -> str:
    return "; ".join(o.decision for o in outcomes)


def _others_served(
    ex: Exercise, provider: ExerciseNode, partner: ExerciseNode, checks: Checks, name: str
) -> None:
    """The provider's other open partners are still served after a shock to one of them."""
    others = [
        ex.pull(m.id, provider.id, ex.fresh(provider.id, m.id))
        for m in ex.online()
        if m not in (provider, partner) and (provider.id, m.id) not in ex.closed
    ]
    checks.add(
        name,
        expectation=f"{provider.id}'s other partners are still served",
        observed=_said(others) if others else "no other partner",
        met=_all(others, "served") or not others,
        decision=_decisions(others),
    )


def pull_round(ex: Exercise, step: sc.PullRound, checks: Checks) -> None:
    """Every online node pulls from every other online one, except closed agreements."""
    outcomes: list[Outcome] = []
    skipped = []
    for puller in ex.online():
        for provider in ex.online():
            if provider is puller:
                continue
            if (provider.id, puller.id) in ex.closed:
                skipped.append(f"{provider.id}->{puller.id}")
                continue
            outcomes.append(ex.pull(puller.id, provider.id, ex.fresh(provider.id, puller.id)))
    checks.add(
        f"every pull is {step.expect}",
        expectation=f"each of the {len(outcomes)} pulls between open agreements is {step.expect}",
        observed=_said(outcomes),
        met=_all(outcomes, step.expect),
        decision=_decisions(outcomes),
        skipped=skipped,
    )


def offline(ex: Exercise, step: sc.Offline, checks: Checks) -> None:
    """The node's server stops; the others pull from it and from each other; it comes back."""
    down = ex[step.node]
    others = [m for m in ex.online() if m is not down]
    down.close()
    down.server.stop()
    failed: list[tuple[str, object]] = []
    to_down: list[Outcome] = []
    between: list[Outcome] = []
    for puller in others:
        if (down.id, puller.id) not in ex.closed:
            query = ex.fresh(down.id, puller.id)
            to_down.append(ex.pull(puller.id, down.id, query, attempts=2))
            failed.append((puller.id, query))
        for provider in others:
            if provider is not puller and (provider.id, puller.id) not in ex.closed:
                between.append(ex.pull(puller.id, provider.id, ex.fresh(provider.id, puller.id)))
    checks.add(
        "the others keep working",
        expectation=f"while {down.id} is offline, pulls between the other nodes are served",
        observed=_said(between),
        met=_all(between, "served") or not between,
        decision=_decisions(between),
    )
    checks.add(
        "the offline node is reported unreachable",
        expectation=f"pulls from {down.id} fail as unreachable (retried, then given up)",
        observed=_said(to_down),
        met=_all(to_down, "unreachable"),
        decision=_decisions(to_down),
    )
    down.server.start()  # the same port: the URL its peers know
    retried = [ex.pull(p, down.id, q) for p, q in failed]  # type: ignore[arg-type]
    checks.add(
        "the retry succeeds after it comes back",
        expectation=f"once {down.id} restarts on its port, the failed pulls are served",
        observed=_said(retried),
        met=_all(retried, "served"),
        decision=_decisions(retried),
    )


def _rotate(member: ExerciseNode) -> str:
    """What ``exchange keys rotate`` does: a new current key, endorsed, audited."""
    new, _old = key_rotation.rotate(
        member.settings, member.node.engine, actor="operator", grace=keys.DEFAULT_GRACE, now=_now()
    )
    return new.kid


def rotate_key(ex: Exercise, step: sc.RotateKey, checks: Checks) -> None:
    member = ex[step.node]
    old = load_current(member.settings.keys_dir).kid
    new = _rotate(member)
    partners = [m for m in ex.online() if m is not member]
    answers = [
        ex.pull(p.id, member.id, ex.fresh(member.id, p.id))
        for p in partners
        if (member.id, p.id) not in ex.closed
    ]
    signed_new = [o for o in answers if o.result is not None and o.result.key_id == new]
    checks.add(
        "partners verify answers signed with the new key",
        expectation=f"after {member.id} rotates its key, its partners' pulls are served and "
        "verified with the new key, which they accept because the old key endorsed it",
        observed=f"{len(signed_new)} of {len(answers)} answers verified with {new[:12]}…; "
        + _said(answers),
        met=bool(answers) and len(signed_new) == len(answers),
        decision=_decisions(answers),
        old_key=old,
        new_key=new,
    )
    asks = [
        ex.pull(member.id, p.id, ex.fresh(p.id, member.id))
        for p in partners
        if (p.id, member.id) not in ex.closed
    ]
    checks.add(
        "its own pulls keep being served",
        expectation=f"{member.id}'s pulls are served (signed again with the previous key "
        "while a partner does not know the new one)",
        observed=_said(asks),
        met=_all(asks, "served"),
        decision=_decisions(asks),
    )


def revoke_key(ex: Exercise, step: sc.RevokeKey, checks: Checks) -> None:
    """``node`` revokes every key of ``peer`` it trusts (a compromised peer); the peer's
    pulls are refused until it re-keys and ``node`` registers the new key out of band."""
    judge, peer = ex[step.node], ex[step.peer]
    now = _now()
    registered = peers.get_peer(judge.node.engine, peer.id)
    revoked = [k.key_id for k in registered.usable_keys(now)]
    for kid in revoked:
        peers.revoke_peer_key(judge.node.engine, peer_id=peer.id, kid=kid, now=now)
    refused = ex.pull(peer.id, judge.id, ex.fresh(judge.id, peer.id))
    checks.add(
        "the revoked peer is refused",
        expectation=f"{peer.id}'s signed pull from {judge.id} is refused with 401 unknown_key",
        observed=refused.summary(),
        met=refused.ending == "refused" and refused.status == 401 and refused.rule == "unknown_key",
        decision=refused.decision,
        revoked_keys=revoked,
    )
    unverified = ex.pull(judge.id, peer.id, ex.fresh(peer.id, judge.id))
    checks.add(
        "its answers are no longer trusted",
        expectation=f"{judge.id} no longer accepts answers signed by {peer.id}'s revoked key "
        "(nothing stored)",
        observed=unverified.summary(),
        met=unverified.ending in ("unverified", "refused"),
        decision=unverified.decision,
    )
    third = [m for m in ex.online() if m not in (judge, peer) and (m.id, peer.id) not in ex.closed]
    elsewhere = [ex.pull(peer.id, m.id, ex.fresh(m.id, peer.id)) for m in third[:1]]
    checks.add(
        "the peer keeps working with the others",
        expectation=f"{peer.id}'s pulls from nodes that did not revoke it are served",
        observed=_said(elsewhere) if elsewhere else "no third node in this federation",
        met=_all(elsewhere, "served") or not third,
        decision=_decisions(elsewhere),
    )
    # Recovery: the peer makes a new key; the judge's operator checks its fingerprint out
    # of band and registers the peer again with it (exchange peer remove, then peer add).
    new = _rotate(peer)
    peers.remove_peer(judge.node.engine, peer_id=peer.id, now=_now())
    public = public_key_text(load_current(peer.settings.keys_dir).public_key)
    peers.add_peer(
        judge.node.engine,
        peer_id=peer.id,
        name=registered.name,
        url=registered.url,
        keys=[peers.NewKey(public)],
        now=_now(),
    )
    back = [
        ex.pull(peer.id, judge.id, ex.fresh(judge.id, peer.id)),
        ex.pull(judge.id, peer.id, ex.fresh(peer.id, judge.id)),
    ]
    checks.add(
        "served again after re-keying",
        expectation=f"after {peer.id} makes a new key and {judge.id} registers it out of band, "
        "pulls both ways are served",
        observed=_said(back),
        met=_all(back, "served"),
        decision=_decisions(back),
        new_key=new,
    )


def sunset(ex: Exercise, step: sc.Sunset, checks: Checks) -> None:
    """Apply (POST /v1/policy) the provider's policy with the agreement ended yesterday."""
    provider, partner = ex[step.provider], ex[step.partner]
    ended = {p for (pv, p) in ex.closed if pv == provider.id and ex.closed[(pv, p)] == "sunset"}
    text = policy_yaml(
        provider.id,
        [m for m in ex.members if m != provider.id],
        budget=ex.scenario.budget_epsilon,
        ended=ended | {partner.id},
    )
    applied = ex.http.post(
        f"{provider.url}/v1/policy",
        content=text.encode(),
        headers={**provider.bearer(OPERATORS[0]), "Content-Type": "application/yaml"},
    )
    ex.closed[(provider.id, partner.id)] = "sunset"
    agreement = agreement_id(provider.id, partner.id)
    refused = ex.pull(partner.id, provider.id, ex.fresh(provider.id, partner.id))
    reasons = " ".join(refused.problem.get("reasons", []))
    checks.add(
        "the partner is refused, naming the agreement",
        expectation=f"after {agreement}'s sunset, {partner.id}'s pull is refused (403) by "
        f"'agreement {agreement}', which says it ended",
        observed=f"policy applied: {applied.status_code}; {refused.summary()} {reasons}",
        met=applied.status_code == 200
        and refused.status == 403
        and refused.rule == f"agreement {agreement}"
        and "sunset" in reasons,
        decision=refused.decision,
    )
    _others_served(ex, provider, partner, checks, "other partners are unaffected")


def budget(ex: Exercise, step: sc.Budget, checks: Checks) -> None:
    """The partner pulls fresh queries until the provider refuses for its budget."""
    provider, partner = ex[step.provider], ex[step.partner]
    limit = int(ex.scenario.budget_epsilon) + 5
    served = 0
    last: Outcome | None = None
    for _ in range(limit):
        last = ex.pull(partner.id, provider.id, ex.fresh(provider.id, partner.id))
        if last.ending != "served":
            break
        served += 1
    ex.closed[(provider.id, partner.id)] = "budget"
    assert last is not None
    checks.add(
        "pulls are refused once the budget is spent",
        expectation=f"{partner.id} is served until its budget at {provider.id} is spent, then "
        "refused with 429 (rule budget)",
        observed=f"{served} fresh releases served, then: {last.summary()}",
        met=served > 0 and last.ending == "refused" and last.status == 429,
        decision=f"{last.decision} after {served} releases",
        budget=last.problem.get("budget"),
    )
    _others_served(ex, provider, partner, checks, "other partners keep working")


def escalation(ex: Exercise, step: sc.Escalation, checks: Checks) -> None:
    """Two operators of the provider widen the agreement to districts; the partner's next
    pull of districts is served, and its signed document names the escalation."""
    provider, partner = ex[step.provider], ex[step.partner]
    districts = ("area:adm2", "week")
    before = ex.pull(partner.id, provider.id, ex.fresh(provider.id, partner.id, group_by=districts))
    body = {
        "agreement": agreement_id(provider.id, partner.id),
        "partners": [partner.id],
        "widen": {"dimensions": {"area": {"level": 2}}},
        "hours": step.hours,
        "reason": f"exercise: the outbreak crossed into {partner.id}'s border districts",
    }
    proposed = ex.http.post(
        f"{provider.url}/v1/escalations", json=body, headers=provider.bearer(OPERATORS[0])
    )
    number = proposed.json().get("id") if proposed.status_code == 201 else None
    own = ex.http.post(
        f"{provider.url}/v1/escalations/{number}/approve", headers=provider.bearer(OPERATORS[0])
    )
    approved = ex.http.post(
        f"{provider.url}/v1/escalations/{number}/approve", headers=provider.bearer(OPERATORS[1])
    )
    checks.add(
        "two different operators are needed",
        expectation="the proposer cannot approve its own proposal (403); a second operator can",
        observed=f"proposed {proposed.status_code} (#{number}), approved by the proposer "
        f"{own.status_code}, by the second operator {approved.status_code}",
        met=proposed.status_code == 201 and own.status_code == 403 and approved.status_code == 200,
        decision=f"{proposed.status_code} {own.status_code} {approved.status_code}",
    )
    after = ex.pull(partner.id, provider.id, ex.fresh(provider.id, partner.id, group_by=districts))
    named = (after.result.release.get("escalation") or {}) if after.result else {}
    checks.add(
        "the partner receives the widened release",
        expectation=f"districts are refused before; after approval {partner.id}'s pull of "
        "districts is served and its signed document names the escalation",
        observed=f"before: {before.summary()}; after: {after.summary()}, escalation "
        f"{named.get('id')} approved by {named.get('approved_by')}",
        met=before.ending == "refused"
        and after.ending == "served"
        and number is not None
        and named.get("id") == number,
        decision=f"{before.decision}; {after.decision}; names escalation: {bool(named)}",
    )
