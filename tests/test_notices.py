"""Correction notices on the providing node: made exactly for the releases a correction
restated, never carrying values, audited; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from nodes import notices
from nodes.database import reading
from nodes.node import Node
from nodes.releases import pipeline
from nodes.tokens import TokenRecord
from policies.query import ReleaseQuery
from tests.audit_support import stored_entries
from tests.release_support import NOW, agency, install_policy, push, weekly


def query(since: str, until: str, schema_id: str = "weekly_epi@1") -> ReleaseQuery:
    return ReleaseQuery(
        schema_id=schema_id,
        measures=("cases",),
        group_by=("area", "week"),
        since=since,
        until=until,
        purpose="outbreak_response",
    )


def seeded(node: Node) -> TokenRecord:
    install_policy(node)
    token = agency(node)
    push(node, token, "weekly_epi@1", weekly(("XA-P1-D1", "XA-P2-D1"), range(1, 10), cases=40))
    return token


def stored(node: Node) -> list[notices.Notice]:
    with reading(node.engine) as conn:
        return notices.for_partner(conn, partner_id="XB") + notices.for_partner(
            conn, partner_id="XC"
        )


def rows(node: Node) -> list[dict[str, Any]]:
    with reading(node.engine) as conn:
        return [dict(r._mapping) for r in conn.execute(select(notices.correction_notices))]


def audit(node: Node, action: str) -> list[dict[str, Any]]:
    return [e for e in stored_entries(node.engine) if e["action"] == action]


def test_a_correction_of_released_weeks_notifies_for_exactly_the_affected_releases(
    node: Node,
) -> None:
    token = seeded(node)
    covering = pipeline.release(node, partner_id="XB", query=query("2026-W01", "2026-W09"), now=NOW)
    also = pipeline.release(node, partner_id="XB", query=query("2026-W03", "2026-W04"), now=NOW)
    elsewhere = pipeline.release(
        node, partner_id="XB", query=query("2026-W06", "2026-W09"), now=NOW
    )
    assert len({covering.id, also.id, elsewhere.id}) == 3
    report = push(node, token, "weekly_epi@1", weekly(("XA-P1-D1",), range(3, 4), cases=41))
    [notice] = stored(node)
    assert notice.partner_id == "XB"
    assert notice.schema_id == "weekly_epi@1"
    assert notice.release_ids == (covering.id, also.id)
    assert notice.weeks == ("2026-W03",)
    [created] = audit(node, "notice.create")
    assert created["actor"] == "node"
    assert created["resource"] == f"notice:{notice.id}"
    assert created["partner"] == "XB"
    assert created["schema"] == "weekly_epi@1"
    assert f"report {report}" in created["reason"]


def test_only_the_weeks_inside_the_partners_releases_are_named(node: Node) -> None:
    token = seeded(node)
    made = pipeline.release(node, partner_id="XB", query=query("2026-W01", "2026-W04"), now=NOW)
    push(node, token, "weekly_epi@1", weekly(("XA-P2-D1",), range(3, 8), cases=39))
    [notice] = stored(node)
    assert notice.release_ids == (made.id,)
    assert notice.weeks == ("2026-W03", "2026-W04")  # W05-W07 were never released to XB


def test_no_notice_without_an_affected_release(node: Node) -> None:
    token = seeded(node)
    # a correction before any release
    push(node, token, "weekly_epi@1", weekly(("XA-P1-D1",), range(2, 3), cases=41))
    pipeline.release(node, partner_id="XB", query=query("2026-W01", "2026-W04"), now=NOW)
    # a first push of new cells, inside the released weeks: not a correction
    push(node, token, "weekly_epi@1", weekly(("XA-P3-D1",), range(1, 5), cases=12))
    # a correction of weeks the release did not cover
    push(node, token, "weekly_epi@1", weekly(("XA-P1-D1",), range(7, 9), cases=41))
    # a correction of another schema, of the released weeks
    capacity = [
        {
            "area": "XA-P1",
            "week": "2026-W02",
            "beds_available": beds,
            "beds_occupied": 10,
            "icu_beds_available": 3,
            "icu_beds_occupied": 1,
        }
        for beds in (20,)
    ]
    push(node, token, "hospital_capacity@1", capacity)
    push(node, token, "hospital_capacity@1", [{**capacity[0], "beds_available": 21}])
    assert stored(node) == []
    assert audit(node, "notice.create") == []


def test_a_notice_carries_no_value_area_or_agency(node: Node) -> None:
    token = seeded(node)
    made = pipeline.release(node, partner_id="XB", query=query("2026-W01", "2026-W09"), now=NOW)
    released = made.as_document()
    corrected = weekly(("XA-P1-D1",), range(5, 6), cases=987_654)
    push(node, token, "weekly_epi@1", corrected)
    [notice] = stored(node)
    [row] = rows(node)
    document = json.dumps(notice.document())
    everything = document + json.dumps(row, default=str)
    # no area of the corrected cells, at any level, and no agency
    for text in ("XA-P1-D1", "XA-P1", "XA-", token.name, "moh"):
        assert text not in everything
    # no value: the only numbers are the ids, the weeks and the time
    allowed = {
        str(notice.id),
        str(made.id),
        str(row["report_id"]),
        *re.findall(r"[0-9]+", "2026-W05"),
        *re.findall(r"[0-9]+", notice.document()["created_at"]),
        *re.findall(r"[0-9]+", str(row["created_at"])),
    }
    assert set(re.findall(r"[0-9]+", everything)) <= allowed
    # ...and none of them is a pushed or released value of a corrected cell that could
    # pass for an id: the document holds exactly these members
    assert set(notice.document()) == {"notice_id", "schema", "weeks", "release_ids", "created_at"}
    pushed = {str(v) for r in corrected for k, v in r.items() if isinstance(v, int)}
    published = {
        str(cell["cases"]["value"])
        for cell in released["cells"]
        if cell["area"] == "XA-P1" and cell["week"] == "2026-W05"
    }
    assert "987654" in pushed
    assert not (pushed | published) & set(re.findall(r"[0-9]+", document)) - {
        str(notice.id),
        str(made.id),
        "2026",
        "05",
    }
