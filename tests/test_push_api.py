"""The agency push API end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodes.node import Node
from nodes.tables import cell_tables, reports
from tests.samples import as_csv, weekly_rows

PUSH = "/v1/reports/weekly_epi@1"


def stored_counts(node: Node) -> tuple[int, int]:
    with node.engine.connect() as conn:
        n_reports = conn.execute(select(func.count()).select_from(reports)).scalar_one()
        n_cells = conn.execute(
            select(func.count()).select_from(cell_tables["weekly_epi@1"])
        ).scalar_one()
    return n_reports, n_cells


def test_json_push_is_stored_and_read_back(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    rows = weekly_rows()
    response = client.post(PUSH, json={"rows": rows}, headers=agency)
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["rows"] == len(rows)
    assert receipt["superseded_rows"] == 0
    assert stored_counts(node) == (1, len(rows))
    detail = client.get(f"/v1/reports/{receipt['report_id']}", headers=agency).json()
    assert {r["area"] for r in detail["stored_rows"]} == {"XA-P1-D1", "XA-P2-D3"}
    assert sum(r["cases"] for r in detail["stored_rows"]) == 5 * len(rows)


def test_csv_and_json_of_the_same_content_hash_alike(
    client: TestClient, agency: dict[str, str]
) -> None:
    rows = weekly_rows()
    as_json = client.post(PUSH, json=rows, headers=agency).json()
    as_text = client.post(
        PUSH, content=as_csv(rows).encode(), headers={**agency, "Content-Type": "text/csv"}
    ).json()
    assert as_json["content_sha256"] == as_text["content_sha256"]
    assert as_text["superseded_rows"] == len(rows)  # the same cells again: a correction


def test_correction_supersedes_only_the_cells_it_states(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    client.post(PUSH, json={"rows": weekly_rows(range(1, 3))}, headers=agency)
    correction = weekly_rows(range(2, 4), cases=9)  # week 2 again, week 3 new
    receipt = client.post(PUSH, json={"rows": correction}, headers=agency).json()
    assert receipt["superseded_rows"] == 4  # week 2's four cells
    table = cell_tables["weekly_epi@1"]
    with node.engine.connect() as conn:
        current = conn.execute(
            select(table.c.week, func.sum(table.c.cases))
            .where(table.c.superseded_by.is_(None))
            .group_by(table.c.week)
        ).all()
        history = conn.execute(select(func.count()).select_from(table)).scalar_one()
    assert dict(current) == {"2026-W01": 20, "2026-W02": 36, "2026-W03": 36}
    assert history == 16  # nothing overwritten or deleted


def test_idempotency_key_replays_and_refuses_a_different_body(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    headers = {**agency, "Idempotency-Key": "upload-2026-W01"}
    first = client.post(PUSH, json={"rows": weekly_rows()}, headers=headers)
    again = client.post(PUSH, json={"rows": weekly_rows()}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["report_id"] == first.json()["report_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(PUSH, json={"rows": weekly_rows(cases=6)}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert "different content" in other.json()["detail"]
    assert stored_counts(node) == (1, 8)


def test_dry_run_stores_nothing(client: TestClient, agency: dict[str, str], node: Node) -> None:
    response = client.post(PUSH + "?dry_run=true", json={"rows": weekly_rows()}, headers=agency)
    assert response.status_code == 200
    assert response.json()["dry_run"] is True
    assert response.json()["rows"] == 8
    assert stored_counts(node) == (0, 0)


def test_a_bad_report_lists_every_bad_row_and_stores_nothing(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    rows = weekly_rows()
    rows[1]["area"] = "XA-P9-D9"
    rows[3]["cases"] = -2
    rows[5]["week"] = "2026-W53"  # ISO 2026 has 53 weeks: valid
    rows[6]["week"] = "2025-W53"  # ISO 2025 has 52: invalid
    rows[7]["deaths"] = True
    response = client.post(PUSH, json={"rows": rows}, headers=agency)
    assert response.status_code == 422
    problem = response.json()
    found = {(e["row"], e["field"]) for e in problem["errors"]}
    assert found == {(2, "area"), (4, "cases"), (7, "week"), (8, "deaths")}
    assert problem["total_errors"] == 4
    assert response.headers["content-language"] == "en"
    codes = {e["field"]: e["code"] for e in problem["errors"]}
    assert codes == {
        "area": "unknown_area",
        "cases": "negative_count",
        "week": "no_such_week",
        "deaths": "not_a_json_integer",
    }
    details = {e["field"]: e["detail"] for e in problem["errors"]}
    assert details["week"] == "Epi week: year 2025 has 52 weeks, so week 53 does not exist"
    assert details["cases"] == "Cases cannot be negative"
    assert details["deaths"] == "Deaths must be a JSON integer, not boolean"
    assert problem["detail"].startswith(
        "4 values of the report are invalid; nothing was stored. row 2: Area is not an area code"
    )
    assert stored_counts(node) == (0, 0)


def test_errors_are_capped_with_a_count_of_the_rest(
    client: TestClient, agency: dict[str, str]
) -> None:
    rows = weekly_rows(range(1, 53))
    for row in rows:
        row["sex"] = "x"
    problem = client.post(PUSH, json={"rows": rows}, headers=agency).json()
    assert problem["total_errors"] == len(rows) == 208
    assert len(problem["errors"]) == 100


def test_naive_generated_at_is_refused(client: TestClient, agency: dict[str, str]) -> None:
    response = client.post(
        PUSH, json={"rows": weekly_rows(), "generated_at": "2026-01-05T10:00:00"}, headers=agency
    )
    assert response.status_code == 422
    assert "generated_at" in response.json()["detail"]
    aware = client.post(
        PUSH,
        json={"rows": weekly_rows(), "generated_at": "2026-01-05T10:00:00+01:00"},
        headers=agency,
    )
    assert aware.status_code == 201


def test_line_list_derives_the_week_from_the_report_date(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    case = {
        "case_id": "c-1",
        "area": "XA-P1-D2",
        "report_date": "2026-01-01",
        "age_band": "5-14",
        "sex": "female",
        "outcome": "recovered",
    }
    response = client.post("/v1/reports/line_list@1", json={"rows": [case]}, headers=agency)
    assert response.status_code == 201, response.text
    table = cell_tables["line_list@1"]
    with node.engine.connect() as conn:
        week, onset = conn.execute(select(table.c.week, table.c.onset_date)).one()
    assert week == "2026-W01"
    assert onset is None


@pytest.mark.parametrize(
    ("accept", "language", "sex", "cases", "summary"),
    [
        (
            "fr-CH, fr;q=0.9, en;q=0.5",
            "fr",
            "Sexe : ce code ne figure pas dans sa liste ; codes permis : female, male, other, unknown",
            "Cas : une valeur négative n’est pas permise",
            "2 valeurs du rapport sont invalides ; rien n’a été enregistré",
        ),
        (
            "es",
            "es",
            "Sexo: el código no está en su lista; códigos permitidos: female, male, other, unknown",
            "Casos: no se admiten valores negativos",
            "2 valores del informe no son válidos; no se ha guardado nada",
        ),
        (
            "de;q=1, ar;q=0.8, fr;q=0.1",
            "ar",
            "الجنس: هذا الرمز ليس من قائمته؛ الرموز المسموح بها: female, male, other, unknown",
            "الحالات: لا يمكن أن تكون القيمة سالبة",
            "قيمتان في التقرير غير صالحتين؛ لم يُحفظ شيء",
        ),
        (
            "de, *;q=0.1",
            "en",
            "Sex is not a code of its list; allowed: female, male, other, unknown",
            "Cases cannot be negative",
            "2 values of the report are invalid; nothing was stored",
        ),
    ],
)
def test_row_errors_speak_the_language_asked_for(
    client: TestClient,
    agency: dict[str, str],
    node: Node,
    accept: str,
    language: str,
    sex: str,
    cases: str,
    summary: str,
) -> None:
    rows = weekly_rows()
    rows[2]["sex"] = "x"
    rows[2]["cases"] = -1
    response = client.post(PUSH, json={"rows": rows}, headers={**agency, "Accept-Language": accept})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["content-language"] == language
    problem = response.json()
    assert problem["detail"].startswith(summary)
    assert cases in problem["detail"]
    assert problem["errors"] == [
        {"row": 3, "field": "cases", "value": "-1", "code": "negative_count", "detail": cases},
        {"row": 3, "field": "sex", "value": "x", "code": "not_in_codelist", "detail": sex},
    ]
    assert stored_counts(node) == (0, 0)


def test_csv_errors_name_the_files_own_lines(client: TestClient, agency: dict[str, str]) -> None:
    rows = weekly_rows()
    lines = as_csv(rows).splitlines()
    lines[2] = lines[2].replace("male", "x", 1)  # the second data row: line 3 of the file
    lines[4] += ",9"  # a ragged row does not hide the others
    lines.insert(5, "")  # a blank line is skipped but still counted
    lines[7] = lines[7].replace("2026-W02", "2026-W99")  # line 8, after the blank line 6
    body = "\n".join(lines) + "\n"
    response = client.post(
        PUSH, content=body.encode(), headers={**agency, "Content-Type": "text/csv"}
    )
    problem = response.json()
    assert [(e["row"], e["field"], e["code"]) for e in problem["errors"]] == [
        (3, "sex", "not_in_codelist"),
        (5, "*", "ragged_row"),
        (8, "week", "no_such_week"),
    ]
    assert problem["errors"][1]["detail"] == "this row has 9 values; the header has 8"
    assert problem["total_errors"] == 3


def test_the_summary_counts_what_the_cell_tables_hold(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    """``reports.summary`` reads only the reports' own counts; the stored rows agree."""
    from nodes.reports import summary

    for cases in (5, 7):  # the second push corrects every cell of the first
        answer = client.post(
            "/v1/reports/weekly_epi@1",
            content=as_csv(weekly_rows(cases=cases)),
            headers={**agency, "Content-Type": "text/csv"},
        )
        assert answer.status_code == 201, answer.text
    with node.engine.connect() as conn:
        for line in summary(node.engine):
            table = cell_tables[str(line["schema"])]
            stored = conn.execute(select(func.count()).select_from(table)).scalar_one()
            current = conn.execute(
                select(func.count()).select_from(table).where(table.c.superseded_by.is_(None))
            ).scalar_one()
            assert (line["rows"], line["current_rows"]) == (stored, current), line
    weekly = {str(x["schema"]): x for x in summary(node.engine)}["weekly_epi@1"]
    assert weekly["reports"] == 2
    assert weekly["current_rows"] == int(str(weekly["rows"])) // 2
