"""Emergency escalations: two people, limits under the red lines, an end on time everywhere."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from exchange.api.app import create_app
from exchange.cli import app as cli
from exchange.clients import pulling
from nodes import escalations, tokens
from nodes.audit.tables import audit_entries
from nodes.escalations import EscalationRefusedError
from nodes.node import Node
from nodes.releases import pipeline, received
from nodes.settings import NodeSettings
from nodes.tokens import TokenRecord
from policies.document import DimensionRule, PolicyError
from policies.escalation import Proposal, Widening
from policies.query import ReleaseQuery
from schemas.errors import ConflictError
from tests.federation import federation
from tests.federation import now as fed_now
from tests.federation import query as fed_query
from tests.release_support import (
    NOW,
    agency,
    edited_policy,
    install_policy,
    ledger_spent,
    policy_from_text,
    push,
    weekly,
)

#: The sample policy lets XB-epi-2026 be escalated (docs/examples/policy-xa.yaml); this
#: leaves it unchanged and is what the other edits start from.
ESCALATABLE = ("      measures: [tests]\n", "      measures: [tests]\n")
DISTRICTS = ReleaseQuery(
    schema_id="weekly_epi@1",
    measures=("cases",),
    group_by=("area:adm2", "week"),
    since="2026-W01",
    until="2026-W09",
    purpose="outbreak_response",
)
PROVINCES = DISTRICTS.model_copy(update={"group_by": ("area:adm1", "week")})
WIDER = Widening(dimensions={"area": DimensionRule(level=2)}, epsilon=1.0)


def operator(node: Node, name: str) -> tuple[TokenRecord, str]:
    return tokens.issue_token(node.engine, name=name, role="operator", schemas=(), now=NOW)


def seeded(node: Node, *replacements: tuple[str, str]) -> None:
    install_policy(node, edited_policy(ESCALATABLE, *replacements))
    push(
        node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1", "XA-P2-D1"), range(1, 5), cases=40)
    )


def proposed(node: Node, by: TokenRecord, widening: Widening = WIDER, hours: int = 48) -> int:
    made = escalations.propose(
        node.engine,
        node.policy,
        operator=by,
        proposal=Proposal("XB-epi-2026", ("XB",), widening, hours),
        reason="cholera crossed the border at XA-P2",
        now=NOW,
    )
    return made.id


def entries(node: Node, prefix: str = "escalation.") -> list[dict[str, Any]]:
    with node.engine.connect() as conn:
        rows = conn.execute(select(audit_entries.c.entry).order_by(audit_entries.c.seq)).all()
    found = [json.loads(bytes(r.entry)) for r in rows]
    return [e for e in found if e["action"].startswith(prefix)]


def test_nothing_changes_until_a_second_operator_approves(node: Node) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    bob, _ = operator(node, "bob")
    number = proposed(node, alice)
    with pytest.raises(pipeline.PolicyDeniedError):
        pipeline.release(node, partner_id="XB", query=DISTRICTS, now=NOW)
    with pytest.raises(EscalationRefusedError, match="needs a second operator"):
        escalations.approve(node.engine, node.policy, operator=alice, escalation_id=number, now=NOW)
    with pytest.raises(pipeline.PolicyDeniedError):
        pipeline.release(node, partner_id="XB", query=DISTRICTS, now=NOW)

    approved = escalations.approve(
        node.engine, node.policy, operator=bob, escalation_id=number, now=NOW
    )
    assert approved.ends_at == NOW + dt.timedelta(hours=48)
    document = pipeline.release(node, partner_id="XB", query=DISTRICTS, now=NOW).as_document()
    assert document["escalation"] == {
        "id": number,
        "agreement": "XB-epi-2026",
        "widens": {"dimensions": {"area": {"level": 2}}, "epsilon": 1.0},
        "proposed_by": "token:alice",
        "approved_by": "token:bob",
        "from": "2026-03-16T12:00:00Z",
        "until": "2026-03-18T12:00:00Z",
    }
    assert document["release_epsilon"] == 1.0  # the escalation's ε, not the agreement's 0.5
    steps = [(e["action"], e["outcome"], e["actor"]) for e in entries(node)]
    assert steps == [
        ("escalation.propose", "allowed", "token:alice"),
        ("escalation.approve", "denied", "token:alice"),
        ("escalation.approve", "allowed", "token:bob"),
    ]
    assert "proposed by token:alice" in entries(node)[-1]["reason"]


def test_the_database_itself_refuses_a_self_approval(node: Node) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    number = proposed(node, alice)
    with pytest.raises(Exception, match=r"(?i)check|constraint"), node.engine.begin() as conn:
        conn.execute(
            escalations.escalations.update()
            .where(escalations.escalations.c.id == number)
            .values(approved_by=alice.id, approved_at=NOW, ends_at=NOW)
        )


def test_it_ends_on_time_on_every_worker_and_its_releases_are_not_served_again(
    node: Node, settings: NodeSettings
) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    bob, _ = operator(node, "bob")
    other_worker = Node.open(settings)
    try:
        before = pipeline.release(other_worker, partner_id="XB", query=PROVINCES, now=NOW)
        number = proposed(node, alice)
        escalations.approve(node.engine, node.policy, operator=bob, escalation_id=number, now=NOW)
        # The other worker decides with the escalation at its next request: no restart.
        during = pipeline.release(other_worker, partner_id="XB", query=PROVINCES, now=NOW)
        assert not during.cached and during.id != before.id  # not the release made before it
        assert during.as_document()["escalation"]["id"] == number
        pipeline.release(other_worker, partner_id="XB", query=DISTRICTS, now=NOW)

        end = NOW + dt.timedelta(hours=48)
        for worker in (node, other_worker):
            with pytest.raises(pipeline.PolicyDeniedError, match="admin level 1"):
                pipeline.release(worker, partner_id="XB", query=DISTRICTS, now=end)
        after = pipeline.release(other_worker, partner_id="XB", query=PROVINCES, now=end)
        assert after.id not in (during.id,)  # what was released under it is not reused
        assert "escalation" not in after.as_document()
        assert after.stored.epsilon_micro == 500_000
    finally:
        other_worker.close()
    assert escalations.close_ended(node.engine, end) == 1
    assert escalations.close_ended(node.engine, end) == 0  # audited once
    expired = entries(node)[-1]
    assert (expired["action"], expired["actor"]) == ("escalation.expire", "node")
    assert "token:alice" in expired["reason"] and "token:bob" in expired["reason"]


def test_red_lines_are_never_widened(node: Node) -> None:
    red = (
        "red_lines:\n",
        "red_lines:\n  - id: no-tests\n    schema: weekly_epi@1\n    measures: [tests]\n",
    )
    with pytest.raises(PolicyError, match="red line no-tests: measure tests never leaves"):
        policy_from_text(edited_policy(ESCALATABLE, red), node)
    # Limits that stop short of the red line load; a proposal reaching it is refused by name.
    seeded(node, red, ("      measures: [tests]\n", ""))
    alice, _ = operator(node, "alice")
    with pytest.raises(EscalationRefusedError) as caught:
        proposed(node, alice, Widening(measures=("tests",)))
    assert caught.value.reasons[0].startswith("red line no-tests: measure tests never leaves")
    assert caught.value.rule == "red line no-tests"
    (refused,) = entries(node)
    assert (refused["outcome"], refused["rule"]) == ("denied", "red line no-tests")


def test_a_proposal_beyond_the_limits_is_refused_with_every_reason(node: Node) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    widening = Widening(
        dimensions={"area": DimensionRule(level=3)}, epsilon=2.0, budget=50, measures=("x",)
    )
    with pytest.raises(EscalationRefusedError) as caught:
        proposed(node, alice, widening, hours=100)
    reasons = caught.value.reasons
    assert "agreement XB-epi-2026 allows escalations of 1 to 72 hours, not 100" in reasons
    assert "weekly_epi@1 has no measure x" in reasons
    assert any("allow area at most as admin level 2" in r for r in reasons)
    assert any("allow ε 1 per release at most" in r for r in reasons)
    assert any("allow a budget of ε 20 at most" in r for r in reasons)
    assert escalations.listing(node.engine) == []


def test_an_agreement_without_limits_cannot_be_escalated(node: Node) -> None:
    install_policy(node)  # XC-epi-2026 has no escalation block
    alice, _ = operator(node, "alice")
    with pytest.raises(EscalationRefusedError, match="does not allow emergency escalation"):
        escalations.propose(
            node.engine,
            node.policy,
            operator=alice,
            proposal=Proposal("XC-epi-2026", (), Widening(epsilon=0.5), 24),
            reason="cholera",
            now=NOW,
        )


def test_a_lapsed_proposal_or_a_revoked_one_cannot_be_approved(node: Node) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    bob, _ = operator(node, "bob")
    lapsed = proposed(node, alice)
    later = NOW + escalations.PROPOSAL_LIFETIME
    with pytest.raises(EscalationRefusedError, match="lapsed unapproved"):
        escalations.approve(node.engine, node.policy, operator=bob, escalation_id=lapsed, now=later)
    withdrawn = proposed(node, alice)
    escalations.revoke(node.engine, operator=alice, escalation_id=withdrawn, now=NOW)
    with pytest.raises(ConflictError, match="withdrawn"):
        escalations.approve(
            node.engine, node.policy, operator=bob, escalation_id=withdrawn, now=NOW
        )


def test_a_revocation_ends_it_at_once(node: Node) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    bob, _ = operator(node, "bob")
    number = proposed(node, alice)
    escalations.approve(node.engine, node.policy, operator=bob, escalation_id=number, now=NOW)
    pipeline.release(node, partner_id="XB", query=DISTRICTS, now=NOW)
    escalations.revoke(node.engine, operator=alice, escalation_id=number, now=NOW)
    with pytest.raises(pipeline.PolicyDeniedError):
        pipeline.release(node, partner_id="XB", query=DISTRICTS, now=NOW)
    revoked = entries(node)[-1]
    assert revoked["action"] == "escalation.revoke"
    assert "proposed by token:alice, approved by token:bob" in revoked["reason"]


def test_a_raised_budget_lets_the_partner_spend_more(node: Node) -> None:
    seeded(
        node,
        ("    budget: {epsilon: 10, period: year}\n", "    budget: {epsilon: 1, period: year}\n"),
    )
    alice, _ = operator(node, "alice")
    bob, _ = operator(node, "bob")
    pipeline.release(node, partner_id="XB", query=PROVINCES, now=NOW)  # 0.5 of 1
    narrower = PROVINCES.model_copy(update={"measures": ("deaths",)})
    pipeline.release(node, partner_id="XB", query=narrower, now=NOW)  # 1.0 of 1
    third = PROVINCES.model_copy(update={"measures": ("admissions",)})
    with pytest.raises(pipeline.InsufficientBudgetError):
        pipeline.release(node, partner_id="XB", query=third, now=NOW)
    number = proposed(node, alice, Widening(budget=2))
    escalations.approve(node.engine, node.policy, operator=bob, escalation_id=number, now=NOW)
    pipeline.release(node, partner_id="XB", query=third, now=NOW)
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 1_500_000


def test_the_api_holds_the_two_person_rule_and_refuses_a_revoked_token(
    settings: NodeSettings, node: Node
) -> None:
    seeded(node)
    alice, alice_secret = operator(node, "alice")
    _bob, bob_secret = operator(node, "bob")
    body = {
        "agreement": "XB-epi-2026",
        "widen": {"dimensions": {"area": {"level": 2}}},
        "hours": 24,
        "reason": "cholera",
    }
    with TestClient(create_app(settings, node=node)) as client:
        as_alice = {"Authorization": f"Bearer {alice_secret}"}
        as_bob = {"Authorization": f"Bearer {bob_secret}"}
        made = client.post("/v1/escalations", json=body, headers=as_alice)
        assert made.status_code == 201, made.text
        assert (made.json()["status"], made.json()["partners"]) == ("proposed", ["XB"])
        number = made.json()["id"]
        self_approval = client.post(f"/v1/escalations/{number}/approve", headers=as_alice)
        assert self_approval.status_code == 403
        assert self_approval.headers["content-type"].startswith("application/problem+json")
        assert "second operator" in self_approval.json()["detail"]
        tokens.revoke_token(node.engine, name="bob", now=NOW)
        revoked = client.post(f"/v1/escalations/{number}/approve", headers=as_bob)
        assert revoked.status_code == 401
        _carol, carol_secret = operator(node, "carol")
        as_carol = {"Authorization": f"Bearer {carol_secret}"}
        approved = client.post(f"/v1/escalations/{number}/approve", headers=as_carol)
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"] == "token:carol"
        listed = client.get("/v1/escalations", headers=as_carol).json()
        assert [e["status"] for e in listed] == ["in force"]
        red = client.post(
            "/v1/escalations",
            json={**body, "widen": {"dimensions": {"area": {"level": 4}}}},
            headers=as_alice,
        )
        assert red.status_code == 403 and red.json()["reasons"]
        assert (
            client.get("/v1/escalations", headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
    assert alice.role == "operator"


def test_the_cli_proposes_approves_and_the_dry_run_shows_the_difference(
    settings: NodeSettings, node: Node
) -> None:
    seeded(node)
    _alice, alice_secret = operator(node, "alice")
    _bob, bob_secret = operator(node, "bob")
    node.close()
    runner = CliRunner()
    directory = str(settings.directory)
    made = runner.invoke(
        cli,
        [
            "escalation",
            "propose",
            directory,
            "--agreement",
            "XB-epi-2026",
            "--hours",
            "24",
            "--reason",
            "cholera",
            "--dimension",
            "area=2",
        ],
        env={"EXCHANGE_OPERATOR_TOKEN": alice_secret},
    )
    assert made.exit_code == 0, made.output
    assert "Proposed escalation 1" in made.output
    again = runner.invoke(
        cli,
        ["escalation", "approve", directory, "1"],
        env={"EXCHANGE_OPERATOR_TOKEN": alice_secret},
    )
    assert again.exit_code == 1 and "second operator" in again.output
    check = [
        "policy",
        "check",
        directory,
        "--partner",
        "XB",
        "--schema",
        "weekly_epi@1",
        "--by",
        "area:adm2",
        "--measures",
        "cases",
        "--purpose",
        "outbreak_response",
        "--since",
        "2026-W01",
        "--until",
        "2026-W09",
        "--escalation",
        "1",
        "--json",
    ]
    dry = runner.invoke(cli, check)
    summary = json.loads(dry.output)
    assert summary["allowed"] and summary["escalation"]["approved_by"] == "(not approved yet)"
    assert summary["without_escalation"]["allowed"] is False
    approved = runner.invoke(
        cli, ["escalation", "approve", directory, "1"], env={"EXCHANGE_OPERATOR_TOKEN": bob_secret}
    )
    assert approved.exit_code == 0, approved.output
    listed = runner.invoke(cli, ["escalation", "list", directory, "--json"])
    assert json.loads(listed.output)[0]["approved_by"] == "token:bob"


def test_the_policy_check_api_shows_what_a_proposal_would_change(
    settings: NodeSettings, node: Node
) -> None:
    seeded(node)
    alice, _ = operator(node, "alice")
    _carol, carol_secret = operator(node, "carol")
    number = proposed(node, alice)
    body = {"partner_id": "XB", "query": DISTRICTS.model_dump(mode="json", exclude_none=True)}
    with TestClient(create_app(settings, node=node)) as client:
        headers = {"Authorization": f"Bearer {carol_secret}"}
        plain = client.post("/v1/policy/check", json=body, headers=headers).json()
        assert plain["allowed"] is False and "without_escalation" not in plain
        assumed = client.post(
            "/v1/policy/check", json={**body, "escalation": number}, headers=headers
        ).json()
        assert assumed["allowed"] is True and assumed["escalation"]["id"] == number
        assert assumed["without_escalation"]["allowed"] is False
        assert assumed["cost"]["epsilon"] == 1.0
        missing = client.post("/v1/policy/check", json={**body, "escalation": 99}, headers=headers)
        assert missing.status_code == 404
    assert escalations.get(node.engine, number) is not None


def test_a_partner_receives_the_escalation_in_the_signed_release(
    tmp_path: Path, database_urls: Iterator[str]
) -> None:
    with ExitStack() as stack:
        members = federation(stack, tmp_path, database_urls, ("XA", "XB"))
        xa, xb = members["XA"], members["XB"]
        alice, _ = tokens.issue_token(
            xa.node.engine, name="alice", role="operator", schemas=(), now=fed_now()
        )
        bob, _ = tokens.issue_token(
            xa.node.engine, name="bob", role="operator", schemas=(), now=fed_now()
        )
        made = escalations.propose(
            xa.node.engine,
            xa.node.policy,
            operator=alice,
            proposal=Proposal(
                "xa-xb-regional", (), Widening(dimensions={"area": DimensionRule(level=2)}), 24
            ),
            reason="cholera at the border",
            now=fed_now(),
        )
        escalations.approve(
            xa.node.engine, xa.node.policy, operator=bob, escalation_id=made.id, now=fed_now()
        )
        result = pulling.pull(xb.node, xb.client_to(xa), fed_query("area:adm2", "week"))
        assert result.release["escalation"]["approved_by"] == "token:bob"
        stored = received.get(xb.node.engine, result.received_id)
        pulling.reverify(xb.node, stored)  # the escalation is inside what XA signed
        shown = CliRunner().invoke(
            cli, ["received", "show", str(xb.settings.directory), str(result.received_id)]
        )
        assert "emergency escalation" in shown.output and "token:alice" in shown.output
