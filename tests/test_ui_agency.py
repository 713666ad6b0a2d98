"""The agency's pages: upload (check, then store exactly the checked file) and its reports."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from exchange import i18n
from exchange.api.bodies import parse_report
from nodes import reports, tokens, upload_sessions
from nodes.node import Node
from nodes.tokens import TokenRecord
from schemas.errors import RowError
from schemas.standard import WEEKLY_EPI
from schemas.validation import Batch
from tests.samples import as_csv, weekly_rows
from tests.ui_support import csrf_of, issue, sign_in, ui_client

SCRIPT = '<script>alert("x")</script>'
ESCAPED = str(escape(SCRIPT))  # as Jinja2 writes it
FILE_NAME = "<script>alert(1)</script>.csv"  # httpx would send a quote as %22


def agency(
    node: Node, name: str = "moh-surveillance", schemas: tuple[str, ...] = ("weekly_epi@1",)
) -> tuple[TokenRecord, str]:
    return tokens.issue_token(
        node.engine, name=name, role="agency", schemas=schemas, now=dt.datetime.now(dt.UTC)
    )


def signed_in(client: TestClient, secret: str) -> tuple[TestClient, str]:
    browser = ui_client(client)
    return browser, sign_in(browser, secret)


def check(
    client: TestClient,
    csrf: str,
    content: str | bytes,
    *,
    filename: str = "week.csv",
    schema: str = "weekly_epi@1",
) -> tuple[int, str]:
    data = content.encode() if isinstance(content, str) else content
    answer = client.post(
        "/ui/upload",
        data={"csrf": csrf, "schema": schema},
        files={"file": (filename, data, "application/octet-stream")},
    )
    return answer.status_code, answer.text


def held(page: str) -> dict[str, str]:
    """The hidden fields of the page's "Store the report" form."""
    form = page[page.index('action="/ui/upload/store"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))


def stored_rows(node: Node) -> int:
    return sum(int(str(s["rows"])) for s in reports.summary(node.engine))


def stored_reports(node: Node) -> int:
    return sum(int(str(s["reports"])) for s in reports.summary(node.engine))


def pending_uploads(node: Node) -> int:
    return upload_sessions.pending(node.engine, dt.datetime.now(dt.UTC))[0]


def bad_csv() -> str:
    rows = weekly_rows()
    rows[0]["area"] = "XA-NOWHERE"
    rows[2]["week"] = "2026-W99"
    rows[5]["cases"] = "many"
    return as_csv(rows)


def test_a_good_file_is_previewed_then_stored(client: TestClient, node: Node) -> None:
    token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    status, page = check(browser, csrf, as_csv(weekly_rows()))
    assert status == 200, page
    assert '<dd id="rows-to-store">8</dd>' in page
    assert '<dd id="cells-superseded">0</dd>' in page
    assert stored_rows(node) == 0  # the check stores nothing
    answer = browser.post("/ui/upload/store", data=held(page))
    assert answer.status_code == 200, answer.text
    assert stored_rows(node) == 8
    [report] = reports.list_for(node.engine, token=token)
    assert report.rows == 8
    assert f'href="/ui/reports/{report.id}"' in answer.text
    assert '<dd id="rows-stored">8</dd>' in answer.text
    listed = browser.get("/ui/reports")
    assert f'href="/ui/reports/{report.id}"' in listed.text
    assert report.content_sha256[:12] in listed.text
    detail = browser.get(f"/ui/reports/{report.id}")
    assert detail.status_code == 200
    assert detail.text.count("XA-P1-D1") == 4


def test_the_stored_report_is_the_checked_file_byte_for_byte(
    client: TestClient, node: Node
) -> None:
    token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    content = as_csv(weekly_rows()).replace("\n", "\r\n")  # as a spreadsheet writes it
    _status, page = check(browser, csrf, content)
    fields = held(page)
    tampered = {**fields, "sha256": "0" * 64}
    assert browser.post("/ui/upload/store", data=tampered).status_code == 422
    assert stored_reports(node) == 0
    browser.post("/ui/upload/store", data=fields)
    [report] = reports.list_for(node.engine, token=token)
    assert report.content_sha256 == hashlib.sha256(content.encode()).hexdigest()


def test_a_second_click_on_store_shows_the_same_report(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    _status, page = check(browser, csrf, as_csv(weekly_rows()))
    first = browser.post("/ui/upload/store", data=held(page))
    again = browser.post("/ui/upload/store", data=held(page))
    assert again.status_code == 200
    assert "already been stored" in again.text
    assert "already been stored" not in first.text
    assert stored_reports(node) == 1


def test_a_json_file_is_previewed_then_stored(client: TestClient, node: Node) -> None:
    token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    document = {"generated_at": "2026-01-20T08:00:00Z", "rows": weekly_rows()}
    status, page = check(browser, csrf, json.dumps(document), filename="week.json")
    assert status == 200, page
    assert '<dd id="rows-to-store">8</dd>' in page
    browser.post("/ui/upload/store", data=held(page))
    [report] = reports.list_for(node.engine, token=token)
    assert report.rows == 8
    rows = reports.rows_of(node.engine, token=token, report_id=report.id)
    assert {r["area"] for r in rows} == {"XA-P1-D1", "XA-P2-D3"}


def test_a_correction_shows_the_cells_it_supersedes(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    _status, page = check(browser, csrf, as_csv(weekly_rows()))
    browser.post("/ui/upload/store", data=held(page))
    status, page = check(browser, csrf, as_csv(weekly_rows(cases=9)))
    assert status == 200
    assert '<dd id="cells-superseded">8</dd>' in page
    assert stored_reports(node) == 1  # the check of a correction stores nothing either
    stored = browser.post("/ui/upload/store", data=held(page))
    assert '<dd id="cells-superseded">8</dd>' in stored.text
    # ids from the node: on PostgreSQL a dry run's rolled-back insert still uses up an id
    newer, older = (r.id for r in reports.list_for(node.engine, token=_token, limit=2))
    listed = browser.get("/ui/reports").text
    assert listed.index(f"Report {newer}<") < listed.index(f"Report {older}<")  # newest first
    first = browser.get(f"/ui/reports/{older}").text
    assert first.count(f"corrected by report {newer}") == 8


def test_a_bad_file_shows_every_row_error_and_stores_nothing(
    client: TestClient, node: Node
) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    status, page = check(browser, csrf, bad_csv())
    assert status == 422
    assert 'id="error-summary"' in page
    table = page[page.index('id="row-errors"') :]
    cells = re.findall(r'<tr id="error-\d+">\s*<td class="num">(\d+)</td>', table)
    assert cells == ["2", "4", "7"]  # the CSV's own lines: the header is line 1
    for value in ("XA-NOWHERE", "2026-W99", "many"):
        assert f'<bdi class="code">{value}</bdi>' in table
    assert stored_rows(node) == 0
    assert pending_uploads(node) == 0  # a refused file is not held
    assert 'action="/ui/upload/store"' not in page


def test_row_errors_are_explained_in_the_page_language(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    browser.get("/ui/language/fr")
    status, page = check(browser, csrf, bad_csv())
    assert status == 422
    error = RowError(2, "area", "XA-NOWHERE", "unknown_area")
    french = i18n.row_detail(error, "fr", WEEKLY_EPI)
    assert french != i18n.row_detail(error, "en", WEEKLY_EPI)
    assert str(escape(french)) in page
    assert 'lang="fr"' in page


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("week.txt", "area,week\n", "must be a CSV file"),
        ("week.csv", "", "The file is empty"),
        ("week.json", "{not json", "week.json"),
        ("week.csv", "area,week,colour\nXA-P1,2026-W01,red\n", "colour"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_on_the_form(
    client: TestClient, node: Node, filename: str, content: str, expected: str
) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    status, page = check(browser, csrf, content, filename=filename)
    assert status == 422
    assert 'id="error-summary"' in page
    assert 'aria-invalid="true"' in page
    if expected != filename:
        assert expected in page
    assert stored_reports(node) == 0
    assert pending_uploads(node) == 0


def test_no_file_chosen_is_an_error_on_the_form(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    answer = browser.post(
        "/ui/upload", data={"csrf": csrf, "schema": "weekly_epi@1"}, files={"x": ("", b"")}
    )
    assert answer.status_code == 422
    assert "Choose a CSV or JSON file" in answer.text


def test_a_schema_the_token_may_not_push_is_refused(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    form = browser.get("/ui/upload").text
    assert 'value="weekly_epi@1"' in form
    assert 'value="line_list@1"' not in form  # only what the token may push is offered
    status, _page = check(browser, csrf, "case_id\n", schema="line_list@1")
    assert status == 403
    assert pending_uploads(node) == 0


def test_confirming_without_csrf_is_refused_and_stores_nothing(
    client: TestClient, node: Node
) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    _status, page = check(browser, csrf, as_csv(weekly_rows()))
    fields = held(page)
    without = {k: v for k, v in fields.items() if k != "csrf"}
    assert browser.post("/ui/upload/store", data=without).status_code == 403
    wrong = {**fields, "csrf": "not-the-session-value"}
    assert browser.post("/ui/upload/store", data=wrong).status_code == 403
    assert stored_reports(node) == 0


def test_checking_without_csrf_is_refused(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, _csrf = signed_in(client, secret)
    status, _page = check(browser, "forged", as_csv(weekly_rows()))
    assert status == 403
    assert pending_uploads(node) == 0


def test_another_agency_can_neither_store_nor_read_what_is_not_its_own(
    client: TestClient, node: Node
) -> None:
    _first, first_secret = agency(node, name="moh-surveillance")
    _second, second_secret = agency(node, name="national-lab")
    browser, csrf = signed_in(client, first_secret)
    _status, page = check(browser, csrf, as_csv(weekly_rows()))
    pending = held(page)
    _status, page = check(browser, csrf, as_csv(weekly_rows(weeks=range(3, 4))))
    browser.post("/ui/upload/store", data=held(page))
    [report] = reports.list_for(node.engine, token=_first)
    client.cookies.clear()  # another person, another browser
    browser, csrf = signed_in(client, second_secret)
    stolen = browser.post("/ui/upload/store", data={**pending, "csrf": csrf})
    assert stolen.status_code == 404
    cancelled = browser.post("/ui/upload/cancel", data={**pending, "csrf": csrf})
    assert cancelled.status_code == 404
    assert browser.get(f"/ui/reports/{report.id}").status_code == 404
    assert f"/ui/reports/{report.id}" not in browser.get("/ui/reports").text
    assert stored_reports(node) == 1
    assert pending_uploads(node) == 1  # the first agency's file is still held for it


def test_cancel_drops_the_held_file(client: TestClient, node: Node) -> None:
    _token, secret = agency(node)
    browser, csrf = signed_in(client, secret)
    _status, page = check(browser, csrf, as_csv(weekly_rows()))
    assert pending_uploads(node) == 1
    answer = browser.post("/ui/upload/cancel", data=held(page), follow_redirects=False)
    assert answer.status_code == 303
    assert pending_uploads(node) == 0
    assert browser.post("/ui/upload/store", data=held(page)).status_code == 404
    assert stored_reports(node) == 0


@pytest.mark.parametrize("role", ["auditor", "operator", "analyst"])
def test_other_roles_may_not_upload_or_see_reports(
    client: TestClient, node: Node, role: str
) -> None:
    browser, csrf = signed_in(client, issue(node, role))  # type: ignore[arg-type]
    assert browser.get("/ui/upload").status_code == 403
    status, _page = check(browser, csrf, as_csv(weekly_rows()))
    assert status == 403
    assert browser.get("/ui/reports").status_code == 403
    assert browser.get("/ui/reports/1").status_code == 403
    assert stored_reports(node) == 0
    assert pending_uploads(node) == 0


def test_pages_need_a_session(client: TestClient) -> None:
    browser = ui_client(client)
    for path in ("/ui/upload", "/ui/reports", "/ui/reports/1"):
        answer = browser.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/sign-in?next=")


def test_reports_are_paged_with_before(client: TestClient, node: Node) -> None:
    token, secret = agency(node)
    for week in range(1, 53):
        reports.store(
            node.engine,
            batch=_parse(node, as_csv(weekly_rows(weeks=range(week, week + 1)))),
            token=token,
            idempotency_key=None,
            now=dt.datetime.now(dt.UTC),
        )
    browser, _csrf = signed_in(client, secret)
    first = browser.get("/ui/reports").text
    assert "Report 52" in first
    assert "Report 2<" not in first
    assert 'href="/ui/reports?before=3"' in first
    older = browser.get("/ui/reports?before=3").text
    assert "Report 2<" in older
    assert "Report 52" not in older
    assert browser.get("/ui/reports?page=2").status_code == 422  # undeclared parameter


def test_a_report_pages_through_its_rows(client: TestClient, node: Node) -> None:
    token, secret = agency(node)
    report = reports.store(
        node.engine,
        batch=_parse(node, as_csv(weekly_rows(weeks=range(1, 30)))),
        token=token,
        idempotency_key=None,
        now=dt.datetime.now(dt.UTC),
    )
    browser, _csrf = signed_in(client, secret)
    first = browser.get(f"/ui/reports/{report.id}").text
    assert first.count("<tr>") == 101  # the header row and 100 rows
    assert f'href="/ui/reports/{report.id}?offset=100"' in first
    last = browser.get(f"/ui/reports/{report.id}?offset=100").text
    assert last.count("<tr>") == 1 + 116 - 100
    assert browser.get(f"/ui/reports/{report.id}?offset=-1").status_code == 400


def test_markup_in_names_values_and_file_names_is_escaped(client: TestClient, node: Node) -> None:
    token, secret = agency(node, name=SCRIPT, schemas=("weekly_epi@1", "line_list@1"))
    browser, csrf = signed_in(client, secret)
    page = browser.get("/ui/upload").text
    assert SCRIPT not in page
    assert ESCAPED in page  # the token's name, in the masthead
    status, page = check(browser, csrf, as_csv(weekly_rows()), filename=FILE_NAME)
    assert status == 200
    assert "<script>alert(1)" not in page
    assert str(escape(FILE_NAME)) in page
    rows = weekly_rows()
    rows[0]["area"] = SCRIPT
    status, page = check(browser, csrf, as_csv(rows), filename=f"{SCRIPT}.csv")
    assert status == 422
    assert SCRIPT not in page
    assert ESCAPED in page  # the bad value, in the errors table
    line = f'case_id,area,report_date,age_band,sex,outcome\n"{SCRIPT}",XA-P1-D1,2026-01-14,25-44,female,recovered\n'
    status, page = check(browser, csrf, line, schema="line_list@1")
    assert status == 200, page
    browser.post("/ui/upload/store", data=held(page))
    [report] = [
        r for r in reports.list_for(node.engine, token=token) if r.schema_id == "line_list@1"
    ]
    detail = browser.get(f"/ui/reports/{report.id}").text
    assert SCRIPT not in detail
    assert ESCAPED in detail  # the stored value, in the rows table


def test_the_upload_form_works_without_javascript_and_enhances_with_it(
    client: TestClient, node: Node
) -> None:
    _token, secret = agency(node)
    browser, _csrf = signed_in(client, secret)
    answer = browser.get("/ui/upload")
    page = answer.text
    assert 'enctype="multipart/form-data"' in page
    assert '<input type="file" id="file" name="file"' in page
    assert '<script src="/ui/static/dropzone.js" defer></script>' in page
    assert "<script>" not in page  # no inline script: the CSP would block it
    assert "onclick" not in page
    assert "style=" not in page
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    script = browser.get("/ui/static/dropzone.js")
    assert script.status_code == 200
    assert "dropzone" in script.text
    assert csrf_of(page)


def _parse(node: Node, text: str) -> Batch:
    return parse_report(text.encode(), "text/csv", WEEKLY_EPI, node.validation)
