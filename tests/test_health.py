"""/healthz and /readyz: anyone learns ready or not; only an operator learns why."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from exchange.api.routes import health
from nodes.node import Node
from tests.audit_support import bearer, stored_entries


def test_without_a_token_readyz_says_ready_and_nothing_more(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


@pytest.mark.parametrize("role", ["agency", "auditor"])
def test_other_roles_and_bad_tokens_get_the_anonymous_answer(
    client: TestClient, node: Node, role: str
) -> None:
    token = bearer(node.engine, name="someone", role=role)  # type: ignore[arg-type]
    assert client.get("/readyz", headers=token).json() == {"status": "ready"}
    unknown = {"Authorization": "Bearer xt_not-a-token"}
    assert client.get("/readyz", headers=unknown).json() == {"status": "ready"}
    failed = stored_entries(node.engine)[-1]  # no quiet place to try tokens
    assert (failed["action"], failed["resource"]) == ("auth.failed", "route:GET /readyz")
    assert "xt_not-a-token" not in json.dumps(failed)
    basic = {"Authorization": "Basic b3BzOnNlY3JldA=="}
    assert client.get("/readyz", headers=basic).json() == {"status": "ready"}


def test_an_operator_sees_the_details(client: TestClient, node: Node) -> None:
    operator = bearer(node.engine, name="ops", role="operator")
    body = client.get("/readyz", headers=operator).json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok"}
    audit = body["details"]["audit"]
    assert audit["log_size"] >= 1
    assert audit["flagged_peers"] == []


def test_not_ready_is_a_503_that_says_why_only_to_an_operator(
    client: TestClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = bearer(node.engine, name="ops", role="operator")

    def unreachable(_engine: object) -> None:
        raise ConnectionRefusedError("database host 10.0.0.7 refused")

    monkeypatch.setattr(health, "ping", unreachable)
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "not ready"}
    detailed = client.get("/readyz", headers=operator)
    assert detailed.status_code == 503
    assert detailed.json()["checks"] == {"database": "unreachable: ConnectionRefusedError"}


def test_openapi_documents_readyz_503(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)
