"""Schema reference pages and CSV templates, for every signed-in role, in every language."""

from __future__ import annotations

import csv
import io

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from nodes import reports
from nodes.node import Node
from schemas.codelists import CODE_LISTS
from schemas.standard import STANDARD_SCHEMAS, WEEKLY_EPI
from tests.samples import weekly_rows
from tests.ui_support import issue, sign_in, ui_client


def signed_in(client: TestClient, node: Node, role: str = "agency") -> tuple[TestClient, str]:
    browser = ui_client(client)
    return browser, sign_in(browser, issue(node, role))  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["agency", "analyst", "auditor", "operator"])
def test_every_role_reads_the_schemas(client: TestClient, node: Node, role: str) -> None:
    browser, _csrf = signed_in(client, node, role)
    listed = browser.get("/ui/schemas")
    assert listed.status_code == 200
    for schema in STANDARD_SCHEMAS:
        assert f'href="/ui/schemas/{schema.id}"' in listed.text
        assert f'href="/ui/schemas/{schema.id}/template.csv"' in listed.text
    one = browser.get("/ui/schemas/weekly_epi@1")
    assert one.status_code == 200
    assert browser.get("/ui/schemas/weekly_epi@1/template.csv").status_code == 200


def test_schema_pages_need_a_session(client: TestClient) -> None:
    browser = ui_client(client)
    for path in (
        "/ui/schemas",
        "/ui/schemas/weekly_epi@1",
        "/ui/schemas/weekly_epi@1/template.csv",
    ):
        answer = browser.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/sign-in")


def test_the_reference_lists_fields_codes_and_bounds(client: TestClient, node: Node) -> None:
    browser, _csrf = signed_in(client, node)
    page = browser.get("/ui/schemas/weekly_epi@1").text
    for field in WEEKLY_EPI.fields:
        assert f'<bdi class="code">{field.name}</bdi>' in page
        assert str(escape(field.label.en)) in page
        assert str(escape(field.description.en)) in page
    for code in CODE_LISTS["age_band"].codes:
        assert f'<bdi class="code">{code.code}</bdi>' in page
    cases = WEEKLY_EPI.measure_by_name["cases"]
    measures = page[page.index('id="measure-table"') :]
    assert f'<td class="num">{cases.contribution_bound}</td>' in measures
    assert "XA-P1-D1" in page  # an example area of this node's gazetteer
    assert 'id="codes-sex"' in page


def test_the_reference_is_in_french_when_the_page_is(client: TestClient, node: Node) -> None:
    browser, _csrf = signed_in(client, node)
    browser.get("/ui/language/fr")
    page = browser.get("/ui/schemas/weekly_epi@1").text
    assert '<html lang="fr" dir="ltr">' in page
    assert str(escape(WEEKLY_EPI.label.fr)) in page
    assert str(escape(WEEKLY_EPI.field_by_name["week"].label.fr)) in page
    for code in CODE_LISTS["sex"].codes:
        assert str(escape(code.label.fr)) in page
        assert str(escape(code.label.en)) not in page or code.label.en == code.label.fr
    listed = browser.get("/ui/schemas").text
    assert str(escape(WEEKLY_EPI.label.fr)) in listed


def test_the_reference_is_right_to_left_in_arabic(client: TestClient, node: Node) -> None:
    browser, _csrf = signed_in(client, node)
    browser.get("/ui/language/ar")
    page = browser.get("/ui/schemas/line_list@1").text
    assert '<html lang="ar" dir="rtl">' in page
    assert WEEKLY_EPI.field_by_name["area"].label.ar in page


def test_an_unknown_schema_is_a_404_page(client: TestClient, node: Node) -> None:
    browser, _csrf = signed_in(client, node)
    for path in ("/ui/schemas/nothing@9", "/ui/schemas/nothing@9/template.csv"):
        answer = browser.get(path)
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
    assert browser.get("/ui/schemas/" + "x" * 65).status_code == 400


def test_the_template_is_a_csv_attachment_of_the_field_names(
    client: TestClient, node: Node
) -> None:
    browser, _csrf = signed_in(client, node)
    for schema in STANDARD_SCHEMAS:
        answer = browser.get(f"/ui/schemas/{schema.id}/template.csv")
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        disposition = answer.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert f"{schema.name}-v{schema.version}-template.csv" in disposition
        rows = list(csv.reader(io.StringIO(answer.text)))
        assert rows == [[f.name for f in schema.fields]]  # no example row that could be stored


def test_the_template_round_trips_through_the_preview(client: TestClient, node: Node) -> None:
    browser, csrf = signed_in(client, node)
    template = browser.get("/ui/schemas/weekly_epi@1/template.csv").text
    header = next(csv.reader(io.StringIO(template)))
    out = io.StringIO(template)
    out.seek(0, io.SEEK_END)
    csv.DictWriter(out, fieldnames=header, lineterminator="\n").writerows(weekly_rows())
    filled = browser.post(
        "/ui/upload",
        data={"csrf": csrf, "schema": "weekly_epi@1"},
        files={"file": ("weekly_epi-v1-template.csv", out.getvalue().encode(), "text/csv")},
    )
    assert filled.status_code == 200, filled.text
    assert '<dd id="rows-to-store">8</dd>' in filled.text
    unchanged = browser.post(
        "/ui/upload",
        data={"csrf": csrf, "schema": "weekly_epi@1"},
        files={"file": ("weekly_epi-v1-template.csv", template.encode(), "text/csv")},
    )
    assert unchanged.status_code == 422  # the header alone has no row to store
    assert 'id="error-summary"' in unchanged.text
    assert all(s["reports"] == 0 for s in reports.summary(node.engine))


def test_the_list_marks_what_an_agency_may_upload(client: TestClient, node: Node) -> None:
    browser, _csrf = signed_in(client, node)
    listed = browser.get("/ui/schemas").text
    row = next(r for r in listed.split("<tr>") if 'href="/ui/schemas/weekly_epi@1"' in r)
    other = next(r for r in listed.split("<tr>") if 'href="/ui/schemas/line_list@1"' in r)
    assert "you may upload it" in row
    assert "you may upload it" not in other
