"""POST /v1/policy/check (operator only) and the CLI's ``policy check``, ``policy validate``
and ``budget``."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from exchange.cli import app as cli
from nodes import tokens
from nodes.access import Role
from nodes.node import Node
from nodes.releases import pipeline
from nodes.settings import NodeSettings
from policies.query import ReleaseQuery
from tests.release_support import (
    NOW,
    SAMPLE_POLICY,
    edited_policy,
    install_policy,
    ledger_spent,
    sample_policy_text,
)

CHECK = "/v1/policy/check"
LONG_LIVED = sample_policy_text().replace("valid_until: 2026-12-31", "valid_until: 2099-12-31")
BODY = {
    "partner_id": "XB",
    "query": {
        "schema_id": "weekly_epi@1",
        "group_by": ["area", "week"],
        "measures": ["cases"],
        "purpose": "outbreak_response",
    },
}


def bearer(node: Node, role: Role) -> dict[str, str]:
    _record, secret = tokens.issue_token(
        node.engine,
        name=f"{role}-1",
        role=role,
        schemas=("weekly_epi@1",) if role == "agency" else (),
        now=NOW,
    )
    return {"Authorization": f"Bearer {secret}"}


def test_the_check_is_for_operators_only(client: TestClient, node: Node) -> None:
    install_policy(node)
    assert client.post(CHECK, json=BODY).status_code == 401
    forbidden = client.post(CHECK, json=BODY, headers=bearer(node, "agency"))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"


def test_the_check_answers_and_spends_nothing(client: TestClient, node: Node) -> None:
    install_policy(node)
    operator = bearer(node, "operator")
    response = client.post(CHECK, json=BODY, headers=operator)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["allowed"] is True
    assert summary["rule"] == "agreement XB-epi-2026"
    assert summary["effective"]["group_by"] == ["area:adm1", "week:week"]
    assert summary["cost"]["epsilon"] == 0.5
    assert [line["left"] for line in summary["budget"]] == [10.0, 20.0]
    assert ledger_spent(node) == {}
    denied = client.post(CHECK, json={**BODY, "partner_id": "XD"}, headers=operator).json()
    assert denied["allowed"] is False
    assert denied["reasons"][0].startswith("no agreement lets XD")


def test_a_malformed_check_is_a_422(client: TestClient, node: Node) -> None:
    operator = bearer(node, "operator")
    bad = {**BODY, "query": {**BODY["query"], "group_by": ["area", "area:adm1"]}}  # type: ignore[dict-item]
    assert client.post(CHECK, json=bad, headers=operator).status_code == 422
    assert (
        client.post(CHECK, json={**BODY, "partner_id": "x y"}, headers=operator).status_code == 422
    )


def test_cli_policy_check(node: Node, settings: NodeSettings) -> None:
    install_policy(node, LONG_LIVED)  # the CLI decides at the real time
    runner = CliRunner()
    directory = str(settings.directory)
    allowed = runner.invoke(
        cli,
        [
            "policy",
            "check",
            directory,
            "--partner",
            "XB",
            "--schema",
            "weekly_epi@1",
            "--by",
            "area,week",
            "--measures",
            "cases",
            "--purpose",
            "outbreak_response",
            "--json",
        ],
    )
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.output)["allowed"] is True
    denied = runner.invoke(
        cli,
        [
            "policy",
            "check",
            directory,
            "--partner",
            "XB",
            "--schema",
            "weekly_epi@1",
            "--by",
            "area:adm2",
            "--purpose",
            "outbreak_response",
            "--filter",
            "sex=male",
        ],
    )
    assert denied.exit_code == 2
    assert "allows admin level 1, the request asked for admin level 2" in " ".join(
        denied.output.split()
    )
    assert ledger_spent(node) == {}


def test_cli_budget_lists_every_account(node: Node, settings: NodeSettings) -> None:
    install_policy(node, LONG_LIVED)
    query = ReleaseQuery(schema_id="weekly_epi@1", measures=("cases",), purpose="outbreak_response")
    pipeline.release(node, partner_id="XB", query=query, now=NOW)
    result = CliRunner().invoke(cli, ["budget", str(settings.directory), "--json"])
    assert result.exit_code == 0, result.output
    rows = {
        (r["scope"], r["partner_id"], r["schema_id"], r["period"]): r
        for r in json.loads(result.output)
    }
    assert rows[("partner", "XB", "weekly_epi@1", "2026")]["spent_micro"] == 500_000
    assert rows[("global", "*", "weekly_epi@1", "2026")]["left_micro"] == 19_500_000
    assert any(key[0] == "global" and key[2] == "line_list@1" for key in rows)
    table = CliRunner().invoke(cli, ["budget", str(settings.directory)])
    assert table.exit_code == 0
    assert "global (all partners)" in table.output


def test_cli_policy_validate(node: Node, settings: NodeSettings, tmp_path: Path) -> None:
    runner = CliRunner()
    # The installed policy is broken (the node would not start), yet a candidate can be checked.
    settings.policy_file.write_text("version: 1\nnode: XA\nagreements: oops\n", encoding="utf-8")
    good = runner.invoke(
        cli, ["policy", "validate", str(SAMPLE_POLICY), "--node", str(settings.directory)]
    )
    assert good.exit_code == 0
    assert "4 agreement(s)" in good.output
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(
        edited_policy(("measures: [cases]\n", "measures: [cases, outcome]\n")), encoding="utf-8"
    )
    bad = runner.invoke(
        cli, ["policy", "validate", str(bad_file), "--node", str(settings.directory)]
    )
    assert bad.exit_code == 1
    assert "agreements[1].measures[1]" in " ".join(bad.output.split())
