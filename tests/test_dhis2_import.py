"""``POST /api/dataValueSets``: DHIS2 data value sets into a node, as DHIS2 would push them.

The sample payloads in tests/data/dhis2/ follow DHIS2's Web API documentation ("Sending
data values": JSON with set-level period/orgUnit overridden per value, and the CSV form);
the answers are checked against the web message and import summary DHIS2 documents.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodes import tokens
from nodes.node import Node
from nodes.settings import NodeSettings
from nodes.tables import cell_tables, reports
from tests.audit_support import stored_entries

DATA = Path(__file__).parent / "data" / "dhis2"
MAPPING = Path(__file__).parents[1] / "docs" / "examples" / "dhis2.yaml"
WEEKLY = cell_tables["weekly_epi@1"]

#: The rows weekly.json states, as the node must store them (unstated measures are 0).
WEEKLY_ROWS = {
    ("XA-P1-D1", "2026-W05", "0-4", "female"): (12, 1, 3, 30),
    ("XA-P1-D1", "2026-W05", "0-4", "male"): (9, 0, 0, 21),
    ("XA-P1-D2", "2026-W05", "65+", "female"): (4, 0, 0, 0),
}


@pytest.fixture
def mapped(settings: NodeSettings) -> NodeSettings:
    shutil.copy(MAPPING, settings.directory / "dhis2.yaml")
    return settings


def post(
    client: TestClient,
    name: str,
    secret: str,
    *,
    scheme: str = "ApiToken",
    content_type: str = "application/json",
    **params: str,
) -> Any:
    return client.post(
        "/api/dataValueSets",
        content=(DATA / name).read_bytes(),
        params=params,
        headers={"Authorization": f"{scheme} {secret}", "Content-Type": content_type},
    )


def current(node: Node) -> dict[tuple[str, ...], tuple[int, ...]]:
    with node.engine.connect() as conn:
        rows = conn.execute(
            select(
                WEEKLY.c.area,
                WEEKLY.c.week,
                WEEKLY.c.age_band,
                WEEKLY.c.sex,
                WEEKLY.c.cases,
                WEEKLY.c.deaths,
                WEEKLY.c.admissions,
                WEEKLY.c.tests,
            ).where(WEEKLY.c.superseded_by.is_(None))
        ).all()
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}


def report_count(node: Node) -> int:
    with node.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(reports)).scalar_one())


def check_web_message(answer: Any, status: int) -> dict[str, Any]:
    """The shape DHIS2 documents for an import: WebMessage around an ImportSummary."""
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"httpStatus", "httpStatusCode", "status", "message", "response"}
    assert (body["httpStatus"], body["httpStatusCode"]) == (
        ("OK", 200) if status == 200 else ("Conflict", 409)
    )
    assert body["status"] == ("OK" if status == 200 else "ERROR")
    summary = body["response"]
    assert summary["responseType"] == "ImportSummary"
    assert summary["status"] == ("SUCCESS" if status == 200 else "ERROR")
    assert set(summary["importCount"]) == {"imported", "updated", "ignored", "deleted"}
    assert all(type(v) is int for v in summary["importCount"].values())
    for conflict in summary["conflicts"]:
        assert {"object", "value", "errorCode", "property", "indexes"} <= set(conflict)
        assert conflict["errorCode"].startswith("E76")
        assert conflict["object"] in conflict["value"]  # the sentence names the value
    return dict(summary)


def test_a_weekly_set_is_stored_as_its_rows(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    summary = check_web_message(post(client, "weekly.json", agency_secret), 200)
    assert summary["importCount"] == {"imported": 7, "updated": 0, "ignored": 0, "deleted": 0}
    assert current(node) == WEEKLY_ROWS
    assert report_count(node) == 1
    (push,) = [e for e in stored_entries(node.engine) if e["action"] == "report.push"]
    assert (push["actor"], push["outcome"]) == ("token:moh-surveillance", "allowed")


def test_bearer_works_as_well_as_api_token(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    check_web_message(post(client, "weekly.json", agency_secret, scheme="Bearer"), 200)
    assert current(node) == WEEKLY_ROWS


def test_a_wrong_token_is_401_problem_and_audited(
    client: TestClient, node: Node, mapped: NodeSettings
) -> None:
    answer = post(client, "weekly.json", "xt_not-a-token")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    failed = [e for e in stored_entries(node.engine) if e["action"] == "auth.failed"]
    assert [e["resource"] for e in failed] == ["route:POST /api/dataValueSets"]
    assert current(node) == {}


def test_a_token_without_the_schema_is_403(
    client: TestClient, node: Node, mapped: NodeSettings
) -> None:
    _record, secret = tokens.issue_token(
        node.engine,
        name="lines-only",
        role="agency",
        schemas=("line_list@1",),
        now=dt.datetime.now(dt.UTC),
    )
    answer = post(client, "weekly.json", secret)
    assert answer.status_code == 403
    assert "may not push weekly_epi@1" in answer.json()["detail"]
    assert current(node) == {}


def test_unknown_element_and_unit_are_both_listed_and_nothing_is_stored(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    summary = check_web_message(post(client, "unknown.json", agency_secret), 409)
    found = {(c["errorCode"], c["object"], tuple(c["indexes"])) for c in summary["conflicts"]}
    assert found == {("E7610", "fbfJHSPpUQD", (1,)), ("E7612", "DiszpKrYNg8", (2,))}
    assert summary["importCount"]["ignored"] == 3
    assert current(node) == {}
    assert report_count(node) == 0


def test_monthly_and_daily_periods_are_conflicts_naming_them(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    summary = check_web_message(post(client, "monthly.json", agency_secret), 409)
    by_object = {c["object"]: c for c in summary["conflicts"]}
    assert set(by_object) == {"202601", "20260115"}
    assert "monthly" in by_object["202601"]["value"]
    assert "daily" in by_object["20260115"]["value"]
    assert {c["errorCode"] for c in summary["conflicts"]} == {"E7632"}
    assert current(node) == {}


def test_the_code_id_scheme(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    refused = check_web_message(post(client, "code_scheme.json", agency_secret), 409)
    assert {c["errorCode"] for c in refused["conflicts"]} >= {"E7600", "E7610", "E7612"}
    check_web_message(post(client, "code_scheme.json", agency_secret, idScheme="CODE"), 200)
    assert current(node) == {("XA-P2-D3", "2026-W05", "15-24", "female"): (6, 0, 0, 18)}


@pytest.mark.parametrize("content_type", ["application/csv", "text/csv"])
def test_the_csv_form_with_and_without_header(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str, content_type: str
) -> None:
    summary = check_web_message(
        post(client, "weekly.csv", agency_secret, content_type=content_type), 200
    )
    assert summary["importCount"]["imported"] == 3
    assert current(node) == {
        ("XA-P3-D1", "2026-W06", "25-44", "female"): (15, 2, 0, 0),
        ("XA-P3-D1", "2026-W06", "unknown", "male"): (1, 0, 0, 0),
    }
    again = check_web_message(
        post(client, "weekly_noheader.csv", agency_secret, content_type=content_type), 200
    )
    assert again["importCount"] == {"imported": 0, "updated": 0, "ignored": 2, "deleted": 0}


def test_a_dry_run_counts_and_stores_nothing(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    summary = check_web_message(post(client, "weekly.json", agency_secret, dryRun="true"), 200)
    assert summary["importCount"]["imported"] == 7
    assert summary["importOptions"]["dryRun"] is True
    assert current(node) == {}
    assert report_count(node) == 0


def test_a_resend_stores_nothing_and_counts_ignored(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    check_web_message(post(client, "weekly.json", agency_secret), 200)
    summary = check_web_message(post(client, "weekly.json", agency_secret), 200)
    assert summary["importCount"] == {"imported": 0, "updated": 0, "ignored": 7, "deleted": 0}
    assert report_count(node) == 1
    pushes = [e for e in stored_entries(node.engine) if e["action"] == "report.push"]
    assert [e["outcome"] for e in pushes] == ["allowed", "replayed"]


def test_a_correction_supersedes_and_the_original_can_come_back(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    check_web_message(post(client, "weekly.json", agency_secret), 200)
    corrected = check_web_message(post(client, "correction.json", agency_secret), 200)
    assert corrected["importCount"] == {"imported": 0, "updated": 1, "ignored": 6, "deleted": 0}
    cell = ("XA-P1-D1", "2026-W05", "0-4", "female")
    assert current(node)[cell] == (14, 1, 3, 30)
    back = check_web_message(post(client, "weekly.json", agency_secret), 200)
    assert back["importCount"] == {"imported": 0, "updated": 1, "ignored": 6, "deleted": 0}
    assert current(node) == WEEKLY_ROWS
    assert report_count(node) == 3


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"importStrategy": "DELETE"}, "importStrategy=DELETE"),
        ({"importStrategy": "NEW_AND_UPDATES"}, "importStrategy=NEW_AND_UPDATES"),
        ({"idScheme": "NAME"}, "idScheme=NAME"),
        ({"orgUnitIdScheme": "ATTRIBUTE:abc"}, "orgUnitIdScheme=ATTRIBUTE:ABC"),
    ],
)
def test_unsupported_parameters_are_refused_with_the_reason(
    client: TestClient,
    node: Node,
    mapped: NodeSettings,
    agency_secret: str,
    params: dict[str, str],
    named: str,
) -> None:
    summary = check_web_message(post(client, "weekly.json", agency_secret, **params), 409)
    assert named in summary["description"]
    assert current(node) == {}


def test_parameters_dhis2_sends_are_accepted(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    params = {
        "importStrategy": "CREATE_AND_UPDATE",
        "idScheme": "UID",
        "dataElementIdScheme": "UID",
        "orgUnitIdScheme": "UID",
        "categoryOptionComboIdScheme": "UID",
        "skipAudit": "false",
        "dryRun": "false",
    }
    check_web_message(post(client, "weekly.json", agency_secret, **params), 200)
    assert current(node) == WEEKLY_ROWS


def test_without_a_mapping_file_the_reason_is_given(
    client: TestClient, node: Node, agency_secret: str
) -> None:
    summary = check_web_message(post(client, "weekly.json", agency_secret), 409)
    assert "no DHIS2 mapping" in summary["description"]
    assert "dhis2.yaml" in summary["description"]


def test_an_unreadable_body_is_a_failed_import(
    client: TestClient, node: Node, mapped: NodeSettings, agency_secret: str
) -> None:
    answer = client.post(
        "/api/dataValueSets",
        content=b'{"dataValues": [1, 2]}',
        headers={"Authorization": f"ApiToken {agency_secret}", "Content-Type": "application/json"},
    )
    summary = check_web_message(answer, 409)
    assert "each element of 'dataValues' must be an object" in summary["description"]


def test_an_unknown_media_type_is_415_problem(
    client: TestClient, mapped: NodeSettings, agency_secret: str
) -> None:
    answer = post(client, "weekly.json", agency_secret, content_type="application/xml")
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"
