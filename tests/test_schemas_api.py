"""Schema metadata over HTTP, in the language asked for."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from schemas.labels import negotiate_language


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("fr-CH, fr;q=0.9, en;q=0.8", "fr"),
        ("de, es;q=0.5, ar;q=0.7", "ar"),
        ("ar;q=0", "en"),
        ("es;q=abc, fr", "fr"),
        ("*", "en"),
    ],
)
def test_language_negotiation(header: str | None, expected: str) -> None:
    assert negotiate_language(header) == expected


def test_schema_list_is_public_and_labelled(client: TestClient) -> None:
    response = client.get("/v1/schemas", headers={"Accept-Language": "es"})
    assert response.status_code == 200
    assert response.headers["content-language"] == "es"
    by_id = {s["id"]: s for s in response.json()}
    assert set(by_id) == {
        "weekly_epi@1",
        "line_list@1",
        "hospital_capacity@1",
        "humanitarian_sitrep@1",
    }
    assert by_id["weekly_epi@1"]["label"] == "Recuentos epidemiológicos semanales"


def test_schema_detail_in_arabic_with_json_schema(client: TestClient) -> None:
    detail = client.get(
        "/v1/schemas/humanitarian_sitrep@1", headers={"Accept-Language": "ar"}
    ).json()
    assert detail["language"] == "ar"
    groups = next(d for d in detail["dimensions"] if d["name"] == "population_group")
    assert {"code": "idp", "label": "النازحون داخليا"} in groups["codes"]
    measures = {m["name"]: m for m in detail["measures"]}
    assert measures["people_in_need"]["kind"] == "stock"
    assert measures["people_in_need"]["hxl"] == "#inneed"
    row = detail["json_schema"]["properties"]
    assert "XA-P1-D1" in row["area"]["enum"]  # the node's own gazetteer
    assert row["people_affected"] == {**row["people_affected"], "type": "integer", "minimum": 0}


def test_line_list_exposes_the_derived_week_as_a_dimension(client: TestClient) -> None:
    detail = client.get("/v1/schemas/line_list@1").json()
    names = [d["name"] for d in detail["dimensions"]]
    assert "week" in names
    assert "case_id" not in names
    assert all(m["contribution_bound"] == 1 for m in detail["measures"])


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")  # without a token: ready or not, nothing more
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_openapi_documents_problem_responses(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    push = spec["paths"]["/v1/reports/{schema_id}"]["post"]
    for status in ("401", "403", "404", "413", "415", "422"):
        assert "application/problem+json" in push["responses"][status]["content"]
    assert set(push["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert client.get("/docs").status_code == 200


def test_metrics_need_an_operator_and_count_pushes(
    client: TestClient, node: object, agency: dict[str, str]
) -> None:
    from nodes import tokens
    from tests.conftest import now
    from tests.samples import weekly_rows

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=agency).status_code == 403
    client.post("/v1/reports/weekly_epi@1", json={"rows": weekly_rows()}, headers=agency)
    _record, secret = tokens.issue_token(
        node.engine, name="ops", role="operator", schemas=(), now=now()
    )  # type: ignore[attr-defined]
    text = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"}).text
    assert 'exchange_report_rows_total{schema="weekly_epi@1"} 8.0' in text
    assert (
        'exchange_http_requests_total{method="POST",route="/v1/reports/{schema_id}",status="201"} 1.0'
        in text
    )
