"""Every error path of the agency API answers application/problem+json and stores nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from nodes import tokens
from nodes.node import Node
from tests.conftest import now
from tests.samples import weekly_rows
from tests.test_push_api import PUSH, stored_counts


def assert_problem(response: object, status: int, *needles: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    problem: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    for needle in needles:
        assert needle in str(problem["detail"]), problem
    return problem


def test_no_token_is_401_with_a_challenge(client: TestClient, node: Node) -> None:
    response = client.post(PUSH, json={"rows": weekly_rows()})
    assert_problem(response, 401, "Bearer")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert stored_counts(node) == (0, 0)


def test_unknown_and_revoked_tokens_are_401(
    client: TestClient, node: Node, agency_secret: str
) -> None:
    assert_problem(
        client.get("/v1/reports", headers={"Authorization": "Bearer xt_nope"}), 401, "not known"
    )
    tokens.revoke_token(node.engine, name="moh-surveillance", now=now())
    revoked = client.post(
        PUSH, json={"rows": weekly_rows()}, headers={"Authorization": f"Bearer {agency_secret}"}
    )
    assert_problem(revoked, 401, "revoked")
    assert stored_counts(node) == (0, 0)


def test_a_schema_the_token_may_not_push_is_403(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    response = client.post("/v1/reports/hospital_capacity@1", json={"rows": []}, headers=agency)
    assert_problem(response, 403, "may not push hospital_capacity@1")


def test_an_auditor_token_cannot_push_or_read_reports(client: TestClient, node: Node) -> None:
    _record, secret = tokens.issue_token(
        node.engine, name="auditor-1", role="auditor", schemas=(), now=now()
    )
    headers = {"Authorization": f"Bearer {secret}"}
    assert_problem(
        client.post(PUSH, json={"rows": weekly_rows()}, headers=headers), 403, "agency role"
    )
    assert_problem(client.get("/v1/reports", headers=headers), 403)
    assert stored_counts(node) == (0, 0)


def test_unknown_schema_is_404(client: TestClient, agency: dict[str, str]) -> None:
    assert_problem(
        client.post("/v1/reports/weekly_epi@9", json={"rows": []}, headers=agency),
        404,
        "weekly_epi@1",
    )


def test_oversized_body_is_413_before_it_is_read(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    limit = node.settings.max_body_bytes
    declared = client.post(
        PUSH,
        content=b"x",
        headers={**agency, "Content-Type": "text/csv", "Content-Length": str(limit + 1)},
    )
    assert_problem(declared, 413, str(limit))

    def stream() -> object:
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536

    streamed = client.post(PUSH, content=stream(), headers={**agency, "Content-Type": "text/csv"})
    assert_problem(streamed, 413)
    assert stored_counts(node) == (0, 0)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b"<xml/>", "application/xml", 415, "application/json or text/csv"),
        (b"{not json", "application/json", 422, "not valid JSON"),
        (b'{"rows": 5}', "application/json", 422, "rows"),
        (b'{"rows": [], "extra": 1}', "application/json", 422, "extra"),
        (b'{"rows": [1, 2]}', "application/json", 422, "array of objects"),
        (b"\xff\xfe", "text/csv", 422, "UTF-8"),
        (b"", "text/csv", 422, "empty"),
        (b"area,week\nXA-P1-D1,2026-W01\n", "text/csv", 422, "missing"),
        (
            b"area,week,age_band,sex,cases,deaths,admissions,tests,colour\n",
            "text/csv",
            422,
            "unknown field",
        ),
    ],
)
def test_malformed_bodies(
    client: TestClient,
    agency: dict[str, str],
    node: Node,
    body: bytes,
    content_type: str,
    status: int,
    needle: str,
) -> None:
    response = client.post(PUSH, content=body, headers={**agency, "Content-Type": content_type})
    assert_problem(response, status, needle)
    assert stored_counts(node) == (0, 0)


def test_a_ragged_csv_names_the_short_row(client: TestClient, agency: dict[str, str]) -> None:
    body = (
        "area,week,age_band,sex,cases,deaths,admissions,tests\n"
        "XA-P1-D1,2026-W01,0-4,male,1,0,0,2\n"
        "XA-P1-D1,2026-W01,0-4,female,1,0\n"
    )
    problem = assert_problem(
        client.post(PUSH, content=body.encode(), headers={**agency, "Content-Type": "text/csv"}),
        422,
    )
    assert problem["errors"] == [
        {
            "row": 3,
            "field": "*",
            "value": "6 values",
            "code": "ragged_row",
            "detail": "this row has 6 values; the header has 8",
        }
    ]


def test_a_quoted_csv_takes_the_careful_path(client: TestClient, agency: dict[str, str]) -> None:
    body = 'area,week,age_band,sex,cases,deaths,admissions,tests\r\n"XA-P1-D1","2026-W1","0-4","male",1,0,0,2\r\n'
    response = client.post(
        PUSH, content=body.encode(), headers={**agency, "Content-Type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    detail = client.get(f"/v1/reports/{response.json()['report_id']}", headers=agency).json()
    assert detail["stored_rows"][0]["week"] == "2026-W01"  # DHIS2-style week normalized


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.delete("/v1/schemas"), 405)


def test_bad_query_parameter_is_a_problem(client: TestClient, agency: dict[str, str]) -> None:
    problem = assert_problem(client.get("/v1/reports?limit=0", headers=agency), 422, "limit")
    assert problem["invalid_params"]


def test_a_misspelt_query_parameter_is_refused_not_ignored(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    response = client.post(PUSH + "?dryrun=true", json={"rows": weekly_rows()}, headers=agency)
    assert_problem(response, 422, "'dryrun'", "dry_run")
    assert stored_counts(node) == (0, 0)
