"""release(): policy, budget, noise, cache, storage and audit, end to end on both backends."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import opendp.prelude as dp
import pytest
from sqlalchemy import select

from nodes import aggregates
from nodes.access import ForbiddenError
from nodes.node import Node
from nodes.releases import pipeline
from nodes.releases.tables import releases as release_rows
from nodes.tokens import TokenRecord
from policies import privacy
from policies.query import ReleaseQuery
from schemas.errors import BudgetExhaustedError
from tests.release_support import (
    NOW,
    agency,
    edited_policy,
    install_policy,
    ledger_spent,
    push,
    release_audit,
    weekly,
)

QUERY = ReleaseQuery(
    schema_id="weekly_epi@1",
    measures=("cases", "deaths"),
    group_by=("area", "week"),
    since="2026-W01",
    until="2026-W09",
    purpose="outbreak_response",
)


def seeded(node: Node, policy: str | None = None) -> TokenRecord:
    install_policy(node, policy)
    token = agency(node)
    push(node, token, "weekly_epi@1", weekly(("XA-P1-D1", "XA-P2-D1"), range(1, 5), cases=40))
    return token


def test_a_release_covers_every_key_with_noise_accuracy_and_cost(node: Node) -> None:
    seeded(node)
    made = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    document = made.as_document()
    assert document["node_id"] == "XA"
    assert document["partner_id"] == "XB"
    assert document["schema"] == "weekly_epi@1"
    assert document["cached"] is False
    assert document["query"]["group_by"] == ["area:adm1", "week:week"]
    assert document["policy_hash"] == node.policy.hash
    assert document["epsilon_spent"] == document["release_epsilon"] == 0.5
    assert document["budget_left"] == {"partner": 9.5}  # never what other partners left
    cells = document["cells"]
    assert len(cells) == 3 * 9  # every province x week, zero cells included
    assert {(c["area"], c["week"]) for c in cells} == {
        (a, f"2026-W{w:02d}") for a in ("XA-P1", "XA-P2", "XA-P3") for w in range(1, 10)
    }
    for cell in cells:
        for measure in ("cases", "deaths"):
            value = cell[measure]
            assert value["accuracy"] > 0
            assert value["suppressed"] == (value["value"] is None)
            assert value["value"] is None or value["value"] >= 5  # suppress_below: 5
    noisy = [c["cases"]["value"] for c in cells if c["area"] == "XA-P1" and c["week"] <= "2026-W04"]
    assert noisy != [40] * 4  # noise was added (scale 4: all four exact has p < 1e-3)
    assert sum(c["deaths"]["suppressed"] for c in cells) > 10  # true zeros mostly hidden
    json.dumps(document)  # JSON-ready


def test_a_release_states_the_noise_scale_a_partner_needs_to_correct_clamping(
    node: Node,
) -> None:
    seeded(node)
    document = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW).as_document()
    assert document["scale"] == {"cases": pytest.approx(8.0), "deaths": pytest.approx(8.0)}
    # the stated scale is the one behind the stated accuracy, by OpenDP's own formula
    for measure, scale in document["scale"].items():
        expected = dp.discrete_laplacian_scale_to_accuracy(scale, 0.05)
        assert document["accuracy"][measure] == pytest.approx(expected, abs=0.01)
    assert privacy.clamping_bias(document["mechanism"], document["scale"]["cases"]) > 0


def test_every_release_is_stored_with_what_made_it(node: Node) -> None:
    seeded(node)
    made = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    with node.engine.connect() as conn:
        row = conn.execute(select(release_rows).where(release_rows.c.id == made.id)).one()
    assert row.status == "released"
    assert row.released_at == NOW
    assert row.created_at == NOW
    assert row.policy_hash == node.policy.hash
    assert row.agreement_id == "XB-epi-2026"
    assert row.epsilon_micro == 500_000
    assert row.mechanism == "laplace"
    assert json.loads(row.query)["until"] == "2026-W09"
    assert json.loads(row.decision)["rule"] == "agreement XB-epi-2026"
    noise = {n["measure"]: n for n in json.loads(row.noise)}
    assert noise["cases"]["scale"] == pytest.approx(8.0)  # d_in 2 / (0.25 ε)
    assert noise["cases"]["accuracy"] > 0
    cells = json.loads(row.cells)
    assert [axis[0] for axis in cells["axes"]] == ["area", "week"]
    assert len(cells["values"]["cases"]) == 27


def test_asking_again_returns_the_stored_release_and_charges_nothing(node: Node) -> None:
    seeded(node)
    first = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW).as_document()
    again = pipeline.release(
        node, partner_id="XB", query=QUERY.model_copy(update={"purpose": "preparedness"}), now=NOW
    ).as_document()
    assert again["cached"] is True
    assert again["release_id"] == first["release_id"]
    assert again["cells"] == first["cells"]  # the same noise: nothing to average away
    assert again["epsilon_spent"] == 0.0
    assert again["budget_left"] == first["budget_left"]
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 500_000
    outcomes = [(e["outcome"], e["resource"]) for e in release_audit(node)]
    release = f"release:{first['release_id']}"
    assert outcomes == [("allowed", release), ("replayed", release)]
    assert [e["epsilon_micro"] for e in release_audit(node)] == [500_000, 0]
    assert "from the cache, nothing charged" in release_audit(node)[1]["reason"]


def test_new_data_makes_it_a_new_query(node: Node) -> None:
    token = seeded(node)
    first = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    push(node, token, "weekly_epi@1", weekly(("XA-P1-D1",), range(2, 3), cases=90))
    second = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    assert not second.cached
    assert second.id != first.id
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 1_000_000


def test_a_denial_is_audited_and_charges_nothing(node: Node) -> None:
    seeded(node)
    query = QUERY.model_copy(update={"group_by": ("area:adm2",)})
    with pytest.raises(pipeline.PolicyDeniedError) as caught:
        pipeline.release(node, partner_id="XB", query=query, now=NOW)
    error = caught.value
    assert isinstance(error, ForbiddenError)
    assert (
        str(error)
        == "agreement XB-epi-2026 allows admin level 1, the request asked for admin level 2"
    )
    assert error.decision.rule == "agreement XB-epi-2026"
    assert error.problem_extra["reasons"] == [str(error)]
    (entry,) = release_audit(node)
    assert (entry["outcome"], entry["actor"], entry["resource"]) == (
        "denied",
        "partner:XB",
        "schema:weekly_epi@1",
    )
    assert entry["reason"] == str(error)
    assert entry["policy_hash"] == node.policy.hash
    assert entry["request_digest"].startswith("sha256:")
    assert ledger_spent(node) == {}


def test_a_missing_policy_shares_nothing(node: Node) -> None:
    with pytest.raises(pipeline.PolicyDeniedError, match="has no policy file"):
        pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)


def test_the_budget_pays_for_exactly_what_it_can(node: Node) -> None:
    seeded(
        node,
        edited_policy(
            ("budget: {epsilon: 10, period: year}", "budget: {epsilon: 1.2, period: year}")
        ),
    )
    for week in (1, 2):
        pipeline.release(
            node,
            partner_id="XB",
            query=QUERY.model_copy(update={"since": f"2026-W0{week}"}),
            now=NOW,
        )
    with pytest.raises(pipeline.InsufficientBudgetError) as caught:
        pipeline.release(
            node, partner_id="XB", query=QUERY.model_copy(update={"since": "2026-W03"}), now=NOW
        )
    assert isinstance(caught.value, BudgetExhaustedError)
    assert str(caught.value) == (
        "XB's budget for weekly_epi@1 (2026) has 0.2 ε left and this release costs 0.5 ε; "
        "nothing was charged"
    )
    assert caught.value.problem_extra["budget_left"] == pytest.approx(0.2)
    assert ledger_spent(node) == {
        ("XB", "weekly_epi@1"): 1_000_000,
        ("*", "weekly_epi@1"): 1_000_000,
    }
    assert [e["outcome"] for e in release_audit(node)] == ["allowed", "allowed", "denied"]
    # A cached answer still costs nothing once the budget is gone.
    assert pipeline.release(
        node, partner_id="XB", query=QUERY.model_copy(update={"since": "2026-W01"}), now=NOW
    ).cached


def test_the_global_budget_binds_partners_together(node: Node) -> None:
    text = edited_policy(
        (
            "global_budget: {epsilon: 20, period: year}",
            "global_budget: {epsilon: 0.7, period: year}",
        )
    )
    seeded(node, text)
    pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    xc = ReleaseQuery(schema_id="weekly_epi@1", purpose="situational_awareness")
    with pytest.raises(
        pipeline.InsufficientBudgetError, match="the global budget for weekly_epi@1"
    ):
        pipeline.release(node, partner_id="XC", query=xc, now=NOW)
    assert ("XC", "weekly_epi@1") not in {k for k, v in ledger_spent(node).items() if v}


def test_the_budget_is_committed_before_noise_and_never_refunded(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(node)

    def crash(*_args: object) -> None:
        raise RuntimeError("the worker died while drawing noise")

    monkeypatch.setattr(privacy, "noisy", crash)
    with pytest.raises(RuntimeError):
        pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 500_000
    with node.engine.connect() as conn:
        assert conn.execute(select(release_rows.c.status)).scalars().all() == ["reserved"]
    assert [e["outcome"] for e in release_audit(node)] == ["allowed"]
    monkeypatch.undo()
    retry = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)  # the slot was freed
    assert not retry.cached  # a reserved release is not an answer; the retry pays again
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 1_000_000


def test_check_spends_nothing_and_shows_the_budget(node: Node) -> None:
    seeded(node)
    pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    decision = pipeline.check(
        node, partner_id="XB", query=QUERY.model_copy(update={"since": "2026-W02"}), now=NOW
    )
    assert decision.allowed
    assert decision.budget is not None
    assert decision.budget.sufficient
    summary = decision.summary()
    assert [(b["left"], b["left_after"]) for b in summary["budget"]] == [(9.5, 9.0), (19.5, 19.0)]
    assert summary["cost"]["epsilon"] == 0.5
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 500_000
    denied = pipeline.check(node, partner_id="XD", query=QUERY, now=NOW)
    assert not denied.allowed
    assert denied.budget is None


def test_check_says_when_a_stored_release_answers_for_free(node: Node) -> None:
    seeded(node)
    made = pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    decision = pipeline.check(node, partner_id="XB", query=QUERY, now=NOW)
    assert decision.budget is not None
    assert decision.budget.cached_release == made.id
    assert [line["left_after"] for line in decision.summary()["budget"]] == [9.5, 19.5]


def test_an_exhausted_partner_cannot_make_the_node_scan_its_data(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(
        node,
        edited_policy(
            ("budget: {epsilon: 10, period: year}", "budget: {epsilon: 0.5, period: year}")
        ),
    )
    pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)

    def scan(*_args: object) -> None:
        raise AssertionError("scanned the data for a release nobody can pay for")

    monkeypatch.setattr(aggregates, "exact", scan)
    with pytest.raises(pipeline.InsufficientBudgetError, match="has 0 ε left"):
        pipeline.release(
            node, partner_id="XB", query=QUERY.model_copy(update={"since": "2026-W02"}), now=NOW
        )
    assert [e["outcome"] for e in release_audit(node)] == ["allowed", "denied"]


def test_a_partner_sees_nothing_of_what_other_partners_spent(node: Node) -> None:
    """The global budget is shared: what is left of it would tell what the others pulled."""
    seeded(
        node,
        edited_policy(
            (
                "global_budget: {epsilon: 20, period: year}",
                "global_budget: {epsilon: 0.7, period: year}",
            )
        ),
    )
    xc = ReleaseQuery(schema_id="weekly_epi@1", purpose="situational_awareness")
    first = pipeline.release(node, partner_id="XC", query=xc, now=NOW).as_document()
    assert set(first["budget_left"]) == {"partner"}
    with pytest.raises(pipeline.InsufficientBudgetError) as caught:
        pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    refusal = caught.value
    assert refusal.line.charge.scope == "global"  # the operator still sees which account
    assert "budget_left" not in refusal.problem_extra
    assert "left" not in str(refusal)
    assert "shared by all partners" in str(refusal)


def test_identical_concurrent_requests_are_charged_once_and_share_one_release(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(node)
    real = privacy.noisy

    def slow(*args: Any) -> Any:
        time.sleep(0.3)  # the first is still drawing noise when the others arrive
        return real(*args)

    monkeypatch.setattr(privacy, "noisy", slow)
    requests = 8
    start = threading.Barrier(requests)

    def ask(_i: int) -> dict[str, Any]:
        start.wait()
        return pipeline.release(node, partner_id="XB", query=QUERY, now=NOW).as_document()

    with ThreadPoolExecutor(max_workers=requests) as pool:
        made = list(pool.map(ask, range(requests)))
    assert {d["release_id"] for d in made} == {made[0]["release_id"]}
    assert all(d["cells"] == made[0]["cells"] for d in made)  # the same noise for all
    assert sorted(d["cached"] for d in made) == [False] + [True] * (requests - 1)
    assert sum(d["epsilon_spent"] for d in made) == 0.5
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 500_000
    with node.engine.connect() as conn:
        assert conn.execute(select(release_rows.c.status)).scalars().all() == ["released"]
    outcomes = [e["outcome"] for e in release_audit(node)]
    assert len(outcomes) == requests
    assert outcomes.count("allowed") == 1


def test_an_identical_request_waits_then_is_told_to_ask_again(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot held by a release still reserved: wait, then 503-able, charging nothing."""
    seeded(node)

    def crash(*_args: object) -> None:
        raise RuntimeError("the worker died while drawing noise")

    monkeypatch.setattr(privacy, "noisy", crash)
    monkeypatch.setattr(pipeline, "_give_up", lambda _node, _release_id: None)  # died hard
    with pytest.raises(RuntimeError):
        pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "IN_FLIGHT_WAIT", 0.1)
    with pytest.raises(pipeline.ReleaseInProgressError):
        pipeline.release(node, partner_id="XB", query=QUERY, now=NOW + dt.timedelta(seconds=5))
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 500_000
    # Past ABANDONED_AFTER the slot is given up and the question answered (and paid) anew.
    later = NOW + pipeline.ABANDONED_AFTER + dt.timedelta(seconds=1)
    fresh = pipeline.release(node, partner_id="XB", query=QUERY, now=later)
    assert not fresh.cached
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 1_000_000
