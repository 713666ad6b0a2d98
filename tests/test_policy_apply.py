"""Changing the policy without a restart: ``exchange policy apply`` and ``POST /v1/policy``
reach every worker on its next request; a policy that does not validate changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from typer.testing import CliRunner

from exchange.api.app import create_app
from exchange.cli import app as cli
from nodes import tokens
from nodes.access import Role
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import stored_entries
from tests.release_support import NOW, edited_policy, install_policy, sample_policy_text

CHECK = "/v1/policy/check"
QUERY = {
    "partner_id": "XB",
    "query": {
        "schema_id": "weekly_epi@1",
        "group_by": ["area", "week"],
        "measures": ["cases"],
        "purpose": "outbreak_response",
    },
}
STRICTER = edited_policy(("partners: [XB]", "partners: [XD]"))
INVALID = edited_policy(("embargo_days: 14", "embargo_days: fourteen"))
runner = CliRunner()


def bearer(node: Node, role: Role, name: str = "ops") -> dict[str, str]:
    _record, secret = tokens.issue_token(node.engine, name=name, role=role, schemas=(), now=NOW)
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def other_worker(settings: NodeSettings, node: Node) -> Iterator[TestClient]:
    """A second worker (or replica) on the same database, with its own Node in memory."""
    opened = Node.open(settings)
    with TestClient(create_app(settings, node=opened)) as worker:
        yield worker
    opened.close()


def applies(node: Node) -> list[dict[str, Any]]:
    return [e for e in stored_entries(node.engine) if e["action"] == "policy.apply"]


def test_a_posted_policy_reaches_another_worker_on_its_next_request(
    client: TestClient, node: Node, other_worker: TestClient
) -> None:
    install_policy(node)
    operator = bearer(node, "operator")
    before = other_worker.post(CHECK, json=QUERY, headers=operator).json()
    assert before["allowed"] is True

    response = client.post(
        "/v1/policy", content=STRICTER, headers={**operator, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    applied = response.json()
    assert applied["policy_hash"] != before["policy_hash"]
    assert applied["agreements"] >= 1

    after = other_worker.post(CHECK, json=QUERY, headers=operator).json()
    assert after["policy_hash"] == applied["policy_hash"]
    assert after["allowed"] is False
    entry = applies(node)[-1]
    assert entry["actor"] == "token:ops"
    assert entry["role"] == "operator"
    assert entry["policy_hash"] == applied["policy_hash"]
    assert node.settings.policy_file.read_text(encoding="utf-8") == STRICTER


def test_an_invalid_policy_is_a_422_that_changes_nothing(client: TestClient, node: Node) -> None:
    good = install_policy(node)
    response = client.post("/v1/policy", content=INVALID, headers=bearer(node, "operator"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert "invalid policy" in problem["detail"]
    (where,) = problem["problems"]
    assert where["place"] == "agreements[0].embargo_days"
    assert isinstance(where["line"], int)
    assert "integer" in where["reason"]
    assert node.policy is good
    assert len(applies(node)) == 1
    assert node.settings.policy_file.read_text(encoding="utf-8") == sample_policy_text()


def test_applying_a_policy_is_for_operators_only(client: TestClient, node: Node) -> None:
    assert client.post("/v1/policy", content=STRICTER).status_code == 401
    agency = {"Authorization": bearer(node, "auditor", "audit")["Authorization"]}
    refused = client.post("/v1/policy", content=STRICTER, headers=agency)
    assert refused.status_code == 403
    assert applies(node) == []
    garbage = client.post("/v1/policy", content=b"\xff\xfe", headers=bearer(node, "operator"))
    assert garbage.status_code == 422
    assert "UTF-8" in garbage.json()["detail"]


def test_an_unchanged_policy_costs_one_indexed_read_per_request(node: Node) -> None:
    install_policy(node)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(("BEGIN", "PRAGMA", "ROLLBACK", "COMMIT")):
            statements.append(statement)

    event.listen(node.engine, "before_cursor_execute", seen)
    try:
        policy = node.refresh_policy()
    finally:
        event.remove(node.engine, "before_cursor_execute", seen)
    assert policy is node.policy
    (only,) = statements
    assert "policy_loads" in only
    assert "ORDER BY policy_loads.id DESC" in only


def test_the_cli_applies_a_file_and_refuses_an_invalid_one(
    settings: NodeSettings, node: Node, tmp_path: Path
) -> None:
    install_policy(node)
    new = tmp_path / "new.yaml"
    new.write_text(STRICTER, encoding="utf-8")
    result = runner.invoke(cli, ["policy", "apply", str(settings.directory), str(new)])
    assert result.exit_code == 0, result.output
    assert "applied" in result.output
    assert node.refresh_policy().document.agreements[0].partners == ("XD",)
    assert applies(node)[-1]["actor"].startswith("operator:")

    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID, encoding="utf-8")
    refused = runner.invoke(cli, ["policy", "apply", str(settings.directory), str(bad)])
    assert refused.exit_code == 1
    assert str(bad) in refused.output
    assert "embargo_days (line" in refused.output
    assert settings.policy_file.read_text(encoding="utf-8") == STRICTER
    assert len(applies(node)) == 2
