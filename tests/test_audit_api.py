"""The auditor API: role separation, entries, checkpoints, proofs, exports, refusals logged."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from nodes.audit import checkpoint_store, verifier
from nodes.audit.merkle import verify_consistency, verify_inclusion
from nodes.audit.tables import audit_checkpoints
from nodes.database import writing
from nodes.node import Node
from tests.audit_support import add_entries, bearer, stored_entries
from tests.conftest import now
from tests.test_api_errors import assert_problem

AUDIT_ROUTES = [
    "/v1/audit/entries",
    "/v1/audit/checkpoint",
    "/v1/audit/proofs/inclusion?seq=0",
    "/v1/audit/proofs/consistency?first=0",
    "/v1/audit/export",
]


@pytest.fixture
def auditor(node: Node) -> dict[str, str]:
    return bearer(node.engine, name="eu-ombudsman", role="auditor")


def sign(node: Node) -> None:
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())


def bearer_operations(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every operation the OpenAPI document says needs a bearer token."""
    spec = client.get("/openapi.json").json()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if any("HTTPBearer" in requirement for requirement in operation.get("security", [])):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return found


@pytest.mark.parametrize("path", AUDIT_ROUTES)
def test_audit_routes_refuse_every_role_but_auditor(
    client: TestClient, node: Node, auditor: dict[str, str], path: str
) -> None:
    sign(node)
    agency = bearer(node.engine, name="lab", role="agency")
    operator = bearer(node.engine, name="ops", role="operator")
    assert_problem(client.get(path), 401)
    assert_problem(client.get(path, headers=agency), 403, "auditor role")
    assert_problem(client.get(path, headers=operator), 403, "auditor role")
    assert client.get(path, headers=auditor).status_code == 200


def test_auditor_tokens_get_403_on_every_other_authenticated_route(
    client: TestClient, auditor: dict[str, str]
) -> None:
    operations = bearer_operations(client)
    others = [(m, p) for m, p in operations if not p.startswith("/v1/audit")]
    assert len(others) >= 3
    assert len(operations) - len(others) == len(AUDIT_ROUTES)
    for method, path in others:
        response = client.request(method, path, headers=auditor)
        assert response.status_code == 403, (method, path, response.text)


def test_refused_requests_are_logged_with_who_and_which_route(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    client.get("/v1/reports", headers={"Authorization": "Bearer xt_guess"})
    client.get("/v1/audit/entries")
    client.get("/v1/reports", headers=auditor)
    unknown, missing, forbidden = stored_entries(node.engine)[-3:]
    assert (unknown["action"], unknown["actor"], unknown["outcome"]) == (
        "auth.failed",
        "unknown",
        "denied",
    )
    assert unknown["resource"] == "route:GET /v1/reports"
    assert "not known" in unknown["reason"]
    assert missing["resource"] == "route:GET /v1/audit/entries"
    assert "Bearer" in missing["reason"]
    assert (forbidden["action"], forbidden["actor"], forbidden["role"]) == (
        "auth.forbidden",
        "token:eu-ombudsman",
        "auditor",
    )
    raw = str(stored_entries(node.engine))
    assert "xt_guess" not in raw


def test_a_revoked_token_is_logged_under_its_name(
    client: TestClient, node: Node, agency_secret: str
) -> None:
    from nodes import tokens

    tokens.revoke_token(node.engine, name="moh-surveillance", now=now())
    client.get("/v1/reports", headers={"Authorization": f"Bearer {agency_secret}"})
    failed = stored_entries(node.engine)[-1]
    assert (failed["action"], failed["actor"], failed["role"]) == (
        "auth.failed",
        "token:moh-surveillance",
        "agency",
    )
    assert "revoked" in failed["reason"]


def test_a_path_with_control_characters_is_logged_by_its_route_template(
    client: TestClient, node: Node
) -> None:
    response = client.get("/v1/reports/1%0Aforged%20entry")
    assert response.status_code in (401, 422)
    assert "\n" not in stored_entries(node.engine)[-1]["resource"]


def test_entries_are_paginated_by_seq_and_filtered(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 7, actor="operator:alice")
    add_entries(node.engine, 3, actor="operator:bob")
    first = client.get("/v1/audit/entries?limit=4", headers=auditor).json()
    assert [e["seq"] for e in first["entries"]] == [0, 1, 2, 3]
    assert first["next_start"] == 4
    assert first["log_size"] == 11
    rest = client.get(f"/v1/audit/entries?start={first['next_start']}", headers=auditor).json()
    assert [e["seq"] for e in rest["entries"]] == list(range(4, 11))
    assert rest["next_start"] is None
    bob = client.get("/v1/audit/entries?actor=operator:bob&limit=2", headers=auditor).json()
    assert [e["actor"] for e in bob["entries"]] == ["operator:bob", "operator:bob"]
    assert bob["next_start"] == 10
    issued = client.get("/v1/audit/entries?action=token.issue", headers=auditor).json()
    assert [e["resource"] for e in issued["entries"]] == ["token:eu-ombudsman"]
    zero, one = first["entries"][:2]
    assert one["prev"] == zero["leaf_hash"]
    assert zero["prev"] == "0" * 64


def test_entries_filter_by_time_range_and_refuse_naive_times(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 2)
    middle = now()
    add_entries(node.engine, 2, tag="late")
    since = middle.isoformat().replace("+00:00", "Z")
    late = client.get("/v1/audit/entries", params={"since": since}, headers=auditor).json()
    assert [e["resource"] for e in late["entries"]] == ["key:filler-late0", "key:filler-late1"]
    early = client.get("/v1/audit/entries", params={"until": since}, headers=auditor).json()
    assert len(early["entries"]) == 3  # the auditor token's issue, then two fillers


def test_a_log_with_entries_but_no_checkpoint_gets_one_signed_on_demand(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    """Issue 8 item 13: never a 404 "the log is new and empty" for a log that has entries."""
    with writing(node.engine) as conn:
        conn.execute(delete(audit_checkpoints))  # a node that has not reached its interval
    add_entries(node.engine, 3)
    body = client.get("/v1/audit/checkpoint", headers=auditor).json()
    parsed = verifier.parse_checkpoint_line(body["line"].encode())
    verifier.verify_checkpoint(parsed, node.key.public_key)
    assert parsed.tree_size >= 4  # the auditor token's issue and the three entries


def test_checkpoint_is_the_latest_signed_and_verifies(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    sign(node)
    body = client.get("/v1/audit/checkpoint", headers=auditor).json()
    parsed = verifier.parse_checkpoint_line(body["line"].encode())
    verifier.verify_checkpoint(parsed, node.key.public_key)
    assert body["tree_size"] == parsed.tree_size == 1
    assert base64.b64decode(body["signature"]) == parsed.signature
    assert body["key_id"] == verifier.key_id(node.key.public_key)


def test_inclusion_proofs_verify_against_the_signed_root(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 12)
    sign(node)
    head = client.get("/v1/audit/checkpoint", headers=auditor).json()
    for seq in range(head["tree_size"]):
        proof = client.get(f"/v1/audit/proofs/inclusion?seq={seq}", headers=auditor).json()
        assert proof["tree_size"] == head["tree_size"]
        verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            seq,
            head["tree_size"],
            [bytes.fromhex(p) for p in proof["proof"]],
            bytes.fromhex(head["root_hash"]),
        )
    older = client.get("/v1/audit/proofs/inclusion?seq=2&tree_size=5", headers=auditor).json()
    assert older["tree_size"] == 5


def test_consistency_proofs_link_two_signed_checkpoints(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 5)
    sign(node)
    old = client.get("/v1/audit/checkpoint", headers=auditor).json()
    add_entries(node.engine, 9)
    sign(node)
    new = client.get("/v1/audit/checkpoint", headers=auditor).json()
    proof = client.get(
        f"/v1/audit/proofs/consistency?first={old['tree_size']}", headers=auditor
    ).json()
    assert (proof["first"], proof["second"]) == (old["tree_size"], new["tree_size"])
    verify_consistency(
        old["tree_size"],
        new["tree_size"],
        bytes.fromhex(old["root_hash"]),
        bytes.fromhex(new["root_hash"]),
        [bytes.fromhex(p) for p in proof["proof"]],
    )


@pytest.mark.parametrize(
    ("query", "status", "needle"),
    [
        ("/v1/audit/proofs/inclusion?seq=0&tree_size=99", 404, "beyond the latest signed"),
        ("/v1/audit/proofs/inclusion?seq=6&tree_size=6", 404, "not in the tree of size 6"),
        ("/v1/audit/proofs/consistency?first=4&second=2", 404, "to the smaller size 2"),
        ("/v1/audit/proofs/consistency?first=0&second=99", 404, "beyond the latest signed"),
        ("/v1/audit/proofs/inclusion?seq=-1", 422, "seq"),
        ("/v1/audit/entries?limit=0", 422, "limit"),
        ("/v1/audit/entries?until=0.5", 422, "not a time"),
        ("/v1/audit/entries?since=2025-01-01T00:00:00", 422, "time zone"),
    ],
)
def test_requests_out_of_range_are_problems(
    client: TestClient, node: Node, auditor: dict[str, str], query: str, status: int, needle: str
) -> None:
    add_entries(node.engine, 5)
    sign(node)
    assert_problem(client.get(query, headers=auditor), status, needle)


def test_proofs_beyond_the_opening_checkpoint_are_404(
    client: TestClient, auditor: dict[str, str]
) -> None:
    response = client.get("/v1/audit/proofs/inclusion?seq=0", headers=auditor)
    assert_problem(response, 404, "not in the tree of size 0")


def test_the_export_streams_a_log_the_verifier_accepts_and_records_itself(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 30)
    sign(node)
    add_entries(node.engine, 4)  # not yet covered: the export signs a checkpoint for them
    response = client.get("/v1/audit/export", headers=auditor)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    assert "attachment" in response.headers["content-disposition"]
    result = verifier.verify_export(response.content, node.key.public_key)
    assert result.entries == result.tree_size == 36 == int(response.headers["audit-tree-size"])
    lines = response.content.splitlines()
    assert lines[-1].startswith(verifier.CHECKPOINT_PREFIX)
    export_entry = stored_entries(node.engine)[35]
    assert (export_entry["action"], export_entry["actor"]) == ("audit.export", "token:eu-ombudsman")


def test_an_export_verifies_against_a_checkpoint_the_auditor_kept(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 3)
    sign(node)
    kept = client.get("/v1/audit/checkpoint", headers=auditor).json()["line"].encode()
    add_entries(node.engine, 3)
    export = client.get("/v1/audit/export", headers=auditor).content
    result = verifier.verify_export(export, node.key.public_key, kept)
    assert result.kept_tree_size == 4
    tampered = export.replace(b"filler entry 1", b"filler entry X", 1)
    with pytest.raises(verifier.EntryModifiedError):
        verifier.verify_export(tampered, node.key.public_key, kept)


def test_readyz_reports_the_audit_log(client: TestClient, node: Node) -> None:
    operator = bearer(node.engine, name="ops", role="operator")  # details are for operators
    add_entries(node.engine, 1)  # the token's issue is the first entry
    sign(node)
    add_entries(node.engine, 1)
    body: dict[str, Any] = client.get("/readyz", headers=operator).json()
    audit = body["details"]["audit"]
    assert audit["log_size"] == 3
    assert audit["uncovered_entries"] == 1
    assert audit["checkpoint"]["tree_size"] == 2
    assert audit["flagged_peers"] == []


def test_every_flipped_byte_of_a_node_export_is_detected_and_named(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 3)
    export = client.get("/v1/audit/export", headers=auditor).content
    lines = export.split(b"\n")[:-1]
    offset = len(lines[0]) + 1
    for lineno, line in enumerate(lines[1:], start=2):
        seq = None if line.startswith(verifier.CHECKPOINT_PREFIX) else lineno - 2
        for at in range(offset, offset + len(line) + 1):
            flipped = export[:at] + bytes([export[at] ^ 0x01]) + export[at + 1 :]
            with pytest.raises(verifier.VerificationError) as caught:
                verifier.verify_export(flipped, node.key.public_key)
            if seq is not None:  # an entry's flip names that entry, by line or by seq
                assert caught.value.line == lineno or caught.value.seq == seq, caught.value
        offset += len(line) + 1


def test_filters_read_the_index_below_the_checkpoint_and_the_tail_above_it(
    client: TestClient, node: Node, auditor: dict[str, str]
) -> None:
    add_entries(node.engine, 4, actor="operator:alice")
    add_entries(node.engine, 2, actor="operator:bob")
    sign(node)  # seqs 0..6 are indexed (0 is the auditor token's issue)
    add_entries(node.engine, 3, actor="operator:alice", tag="tail")
    pages, start = [], 0
    while start is not None:
        page = client.get(
            "/v1/audit/entries",
            params={"actor": "operator:alice", "limit": 3, "start": start},
            headers=auditor,
        ).json()
        pages.append([e["seq"] for e in page["entries"]])
        start = page["next_start"]
    assert pages == [[1, 2, 3], [4, 7, 8], [9]]
    filler = client.get("/v1/audit/entries?action=key.rotate&start=5", headers=auditor).json()
    assert [e["seq"] for e in filler["entries"]] == [5, 6, 7, 8, 9]
