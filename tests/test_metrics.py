"""/metrics: the node's state read from the database at scrape time, for operators only."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nodes.audit import checkpoint_store
from nodes.audit.merkle import leaf_hash
from nodes.node import Node
from nodes.releases import pipeline
from policies.query import ReleaseQuery
from tests.audit_support import bearer
from tests.release_support import NOW, agency, edited_policy, install_policy, push, weekly
from tests.test_audit_witness import PeerLog, see

QUERY = ReleaseQuery(
    schema_id="weekly_epi@1",
    measures=("cases",),
    group_by=("area", "week"),
    since="2026-W01",
    until="2026-W09",
    purpose="outbreak_response",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, headers: dict[str, str]) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


def test_a_quiet_node_reports_nothing_flagged_and_a_fresh_checkpoint(
    client: TestClient, node: Node
) -> None:
    samples = scrape(client, bearer(node.engine, name="ops", role="operator"))
    assert value(samples, "exchange_peers_flagged") == 0
    assert value(samples, "exchange_audit_log_entries") == 1  # the operator token's issue
    age = value(samples, "exchange_audit_checkpoint_age_seconds")  # signed at startup
    assert age is not None
    assert 0 <= age < 3600
    assert not names(samples) & {"exchange_releases_total", "exchange_refusals_total"}
    assert "exchange_budget_left_epsilon" not in names(samples)  # no policy, no budget


def test_budgets_releases_refusals_checkpoints_and_flags_after_a_scenario(
    client: TestClient, node: Node
) -> None:
    operator = bearer(node.engine, name="ops", role="operator")
    install_policy(node)
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1", "XA-P2-D1"), range(1, 5)))
    pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)  # replayed: not counted
    for _ in range(2):
        with pytest.raises(pipeline.PolicyDeniedError):
            adm2 = QUERY.model_copy(update={"group_by": ("area:adm2",)})
            pipeline.release(node, partner_id="XB", query=adm2, now=NOW)
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    checkpoint_store.sign(node.engine, node.key.private_key, now=hour_ago)
    peer = PeerLog().grow(4)
    see(node, peer, peer.checkpoint(0))
    forged = peer.fork(4)
    forged.leaves[1] = leaf_hash(b"rewritten")
    see(node, forged, forged.checkpoint(1))

    samples = scrape(client, operator)
    budget = "exchange_budget_left_epsilon"
    account = {"schema": "weekly_epi@1", "period": "2026"}
    assert value(samples, budget, account="partner", partner="XB", **account) == 10 - 0.5
    assert value(samples, budget, account="global", partner="", **account) == 20 - 0.5
    assert value(samples, "exchange_budget_cap_epsilon", account="global", partner="", **account)
    released = {"partner": "XB", "schema": "weekly_epi@1", "rule": "agreement XB-epi-2026"}
    assert value(samples, "exchange_releases_total", **released) == 1
    refused = {"partner": "XB", "schema": "weekly_epi@1", "rule": "agreement XB-epi-2026"}
    assert value(samples, "exchange_refusals_total", **refused) == 2
    age = value(samples, "exchange_audit_checkpoint_age_seconds")
    assert age is not None
    assert 3600 <= age < 3600 * 24
    assert value(samples, "exchange_peers_flagged") == 1


def test_a_budget_refusal_counts_as_a_refusal(client: TestClient, node: Node) -> None:
    operator = bearer(node.engine, name="ops", role="operator")
    install_policy(
        node,
        edited_policy(
            ("budget: {epsilon: 10, period: year}", "budget: {epsilon: 1.2, period: year}")
        ),
    )
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1",), range(1, 5)))
    for week in (1, 2):
        since = QUERY.model_copy(update={"since": f"2026-W0{week}"})
        pipeline.release(node, partner_id="XB", query=since, now=NOW)
    with pytest.raises(pipeline.InsufficientBudgetError):
        since = QUERY.model_copy(update={"since": "2026-W03"})
        pipeline.release(node, partner_id="XB", query=since, now=NOW)
    samples = scrape(client, operator)
    refused = {"partner": "XB", "schema": "weekly_epi@1", "rule": "budget"}
    assert value(samples, "exchange_refusals_total", **refused) == 1
    refusals = [n for n, labels in samples if n == "exchange_refusals_total"]
    assert len(refusals) == 1  # not under the agreement that allowed the query too
    released = {"partner": "XB", "schema": "weekly_epi@1", "rule": "agreement XB-epi-2026"}
    assert value(samples, "exchange_releases_total", **released) == 2
    account = {"account": "partner", "partner": "XB", "schema": "weekly_epi@1", "period": "2026"}
    assert value(samples, "exchange_budget_left_epsilon", **account) == pytest.approx(0.2)


def test_metrics_need_an_operator_token(client: TestClient, node: Node) -> None:
    assert client.get("/metrics").status_code == 401
    auditor = bearer(node.engine, name="aud", role="auditor")
    assert client.get("/metrics", headers=auditor).status_code == 403


def test_openapi_says_metrics_are_prometheus_text(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(ok) == {"text/plain; version=0.0.4"}


def test_refusals_count_under_the_rule_that_refused_them(client: TestClient, node: Node) -> None:
    """A red line, an agreement and no policy at all each refuse; each counts under its rule."""
    operator = bearer(node.engine, name="ops", role="operator")
    install_policy(node)
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1",), range(1, 5)))
    sitrep = ReleaseQuery(schema_id="humanitarian_sitrep@1", purpose="outbreak_response")
    adm2 = QUERY.model_copy(update={"group_by": ("area:adm2",)})
    for partner, query in (("XB", sitrep), ("XB", sitrep), ("XB", adm2), ("XZ", QUERY)):
        with pytest.raises(pipeline.PolicyDeniedError):
            pipeline.release(node, partner_id=partner, query=query, now=NOW)
    samples = scrape(client, operator)
    refusals = {
        dict(labels)["rule"]: (dict(labels)["partner"], dict(labels)["schema"], n)
        for name, labels in samples
        if name == "exchange_refusals_total"
        for n in [samples[(name, labels)]]
    }
    assert refusals["red line displacement-figures"] == ("XB", "humanitarian_sitrep@1", 2)
    assert refusals["agreement XB-epi-2026"] == ("XB", "weekly_epi@1", 1)
    assert refusals["deny by default"] == ("XZ", "weekly_epi@1", 1)  # no agreement with XZ
    assert len(refusals) == 3


def test_pending_upload_sessions_and_their_bytes(client: TestClient, node: Node) -> None:
    operator = bearer(node.engine, name="ops", role="operator")
    pushing = bearer(node.engine, name="moh-uploads", role="agency")
    before = scrape(client, operator)
    assert value(before, "exchange_upload_sessions_pending") == 0
    opened = client.post(
        "/v1/uploads", json={"schema_id": "weekly_epi@1", "media_type": "text/csv"}, headers=pushing
    ).json()
    client.put(f"/v1/uploads/{opened['upload_id']}/parts/1", content=b"x" * 700, headers=pushing)
    client.put(f"/v1/uploads/{opened['upload_id']}/parts/2", content=b"y" * 50, headers=pushing)
    during = scrape(client, operator)
    assert value(during, "exchange_upload_sessions_pending") == 1
    assert value(during, "exchange_upload_pending_bytes") == 750
    client.delete(f"/v1/uploads/{opened['upload_id']}", headers=pushing)
    after = scrape(client, operator)
    assert value(after, "exchange_upload_sessions_pending") == 0
    assert value(after, "exchange_upload_pending_bytes") == 0
