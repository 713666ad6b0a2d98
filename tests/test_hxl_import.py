"""HXL in: a situation report kept as an HXL-tagged spreadsheet is pushed as it is, read by
its hashtags; libhxl, HXL's own library, reads the same file as the node must."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import hxl
import pytest
from fastapi.testclient import TestClient

from exchange.clients.push import push_file
from exchange.formats import hxl_import
from nodes import tokens
from nodes.node import Node

PUSH = "/v1/reports/humanitarian_sitrep@1"
MEASURES = {
    "#affected": "people_affected",
    "#inneed": "people_in_need",
    "#affected+displaced": "people_displaced",
    "#reached": "people_reached",
}

#: As a humanitarian office keeps it: a title row, a human header, the hashtags, the data;
#: names and an organisation the node has no field for; a province row beside district rows.
SHEET = """\
Situation report,,,,,,,,,
Province,Province code,District code,Week,Population group,Affected,In need,Displaced,Reached,Reported by
#adm1+name,#adm1+code,#adm2+code,#date+week,#group+population,#affected,#inneed,#Affected +Displaced,#reached,#org
Province 1,XA-P1,XA-P1-D1,2026-W05,idp,"1,200",900,300,450,Relief Org
Province 1,XA-P1,XA-P1-D2,2026-W05,idp,800,600,200,300,Relief Org
Province 2,XA-P2,,2026-W05,refugee,500,400,100,250,Relief Org
"""


@pytest.fixture
def sitrep_agency(node: Node) -> dict[str, str]:
    _record, secret = tokens.issue_token(
        node.engine,
        name="ocha-office",
        role="agency",
        schemas=("humanitarian_sitrep@1",),
        now=dt.datetime.now(dt.UTC),
    )
    return {"Authorization": f"Bearer {secret}", "Content-Type": "text/csv"}


def libhxl_rows(path: Path) -> list[dict[str, str]]:
    """What HXL's own library reads: each row's area is its finest P-code."""
    source = list(hxl.data(io.BytesIO(path.read_bytes())))  # a path: libhxl leaves it open
    rows = []
    for row in source:
        cells = {
            "area": row.get("#adm2+code") or row.get("#adm1+code"),
            "week": row.get("#date+week"),
            "population_group": row.get("#group+population"),
        }
        for tag, field in MEASURES.items():
            cells[field] = int(str(row.get(tag)).replace(",", ""))
        rows.append(cells)
    return rows


def stored(client: TestClient, headers: dict[str, str], report_id: int) -> list[dict[str, object]]:
    detail = client.get(f"/v1/reports/{report_id}", headers=headers)
    assert detail.status_code == 200, detail.text
    return [
        {
            k: v
            for k, v in row.items()
            if k in {"area", "week", "population_group", *MEASURES.values()}
        }
        for row in detail.json()["stored_rows"]
    ]


def test_a_tagged_sheet_is_stored_as_libhxl_reads_it(
    client: TestClient, sitrep_agency: dict[str, str], tmp_path: Path
) -> None:
    sheet = SHEET.replace('"1,200"', "1200")
    path = tmp_path / "sitrep.csv"
    path.write_text(sheet, encoding="utf-8")
    response = client.post(PUSH, content=sheet.encode(), headers=sitrep_agency)
    assert response.status_code == 201, response.text
    expected = libhxl_rows(path)
    assert len(expected) == 3
    key = lambda r: (r["area"], r["population_group"])  # noqa: E731
    assert sorted(stored(client, sitrep_agency, response.json()["report_id"]), key=key) == sorted(
        expected, key=key
    )


def test_a_count_written_with_a_thousands_separator_is_an_error_on_its_file_line(
    client: TestClient, sitrep_agency: dict[str, str]
) -> None:
    response = client.post(PUSH, content=SHEET.encode(), headers=sitrep_agency)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["row"], e["field"], e["value"]) for e in errors] == [(4, "people_affected", "1,200")]
    assert client.get("/v1/reports", headers=sitrep_agency).json()["reports"] == []


def test_plain_text_without_quotes_is_read_by_its_tags_too(
    client: TestClient, sitrep_agency: dict[str, str]
) -> None:
    sheet = SHEET.replace('"1,200"', "1200")
    assert '"' not in sheet
    response = client.post(PUSH, content=sheet.encode(), headers=sitrep_agency)
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 3


def test_a_missing_hashtag_is_named_with_the_tag_that_would_supply_it(
    client: TestClient, sitrep_agency: dict[str, str]
) -> None:
    sheet = SHEET.replace('"1,200"', "1200").replace("#inneed", "#inneeds")
    response = client.post(PUSH, content=sheet.encode(), headers=sitrep_agency)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "people_in_need (#inneed)" in detail
    assert "humanitarian_sitrep@1" in detail


def test_a_repeated_hashtag_is_refused(client: TestClient, sitrep_agency: dict[str, str]) -> None:
    sheet = SHEET.replace('"1,200"', "1200").replace("#reached,#org", "#reached,#REACHED")
    response = client.post(PUSH, content=sheet.encode(), headers=sitrep_agency)
    assert response.status_code == 422, response.text
    assert "#REACHED" in response.json()["detail"]


def test_a_sheet_without_area_codes_says_which_tag_is_wanted(
    client: TestClient, sitrep_agency: dict[str, str]
) -> None:
    sheet = SHEET.replace('"1,200"', "1200").replace("#adm1+code,#adm2+code", "#adm1+x,#adm2+y")
    response = client.post(PUSH, content=sheet.encode(), headers=sitrep_agency)
    assert response.status_code == 422
    assert "area (#adm1+code)" in response.json()["detail"]


def test_a_schema_without_hashtags_refuses_a_tagged_file(
    client: TestClient, agency: dict[str, str]
) -> None:
    sheet = "Case,Area\n#case+id,#adm1+code\nc1,XA-P1\n"
    response = client.post(
        "/v1/reports/line_list@1",
        content=sheet.encode(),
        headers={**agency, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    assert "missing" in response.json()["detail"] or "no column" in response.json()["detail"]


@pytest.mark.parametrize(
    "tag",
    ["#affected", "#Affected +Displaced", " #adm2 + code ", "#date+week", "#x_1+a+b"],
)
def test_hashtags_parse_as_libhxl_parses_them(tag: str) -> None:
    column = hxl.model.Column.parse(tag.strip().replace(" ", ""))
    assert hxl_import.parse_tag(tag) == (column.tag[1:], frozenset(column.attributes))


@pytest.mark.parametrize("text", ["Affected", "#", "#1abc", "#a+", "# a b"])
def test_text_that_is_not_a_hashtag_is_not_one(text: str) -> None:
    assert hxl_import.parse_tag(text) is None


def test_push_sends_a_tagged_file_whole_and_the_upload_session_says_why_it_cannot(
    client: TestClient, sitrep_agency: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "sitrep.csv"
    path.write_text(SHEET.replace('"1,200"', "1200"), encoding="utf-8")
    secret = sitrep_agency["Authorization"].removeprefix("Bearer ")
    result = push_file(
        client, token=secret, schema_id="humanitarian_sitrep@1", path=path, chunk_rows=1
    )
    assert (result.rows, result.parts) == (3, 1)

    opened = client.post(
        "/v1/uploads",
        json={"schema_id": "humanitarian_sitrep@1", "media_type": "text/csv"},
        headers={"Authorization": sitrep_agency["Authorization"], "Idempotency-Key": "hxl-1"},
    ).json()
    upload = f"/v1/uploads/{opened['upload_id']}"
    auth = {"Authorization": sitrep_agency["Authorization"]}
    assert client.put(f"{upload}/parts/1", content=path.read_bytes(), headers=auth).is_success
    refused = client.post(f"{upload}/commit", headers=auth)
    assert refused.status_code == 422, refused.text
    assert "line 3 is an HXL hashtag row" in refused.json()["detail"]
