"""Every person is counted once: a province and its districts never both count, on SQLite and
PostgreSQL. Within one report such rows are refused; across reports the later one supersedes
the older rows it overlaps, so a correction can change the level an area is reported at."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from nodes import reports, tokens
from nodes.node import Node
from nodes.tables import cell_tables
from nodes.tokens import TokenRecord
from schemas.validation import ReportValidationError, from_json_rows
from tests.release_support import NOW, agency, install_policy, weekly
from tests.test_push_api import stored_counts
from tests.test_release_aggregate import exact_of

PUSH = "/v1/reports/weekly_epi@1"
DISTRICTS = ("XA-P1-D1", "XA-P1-D2", "XA-P1-D3")
PROVINCE_AND_DISTRICTS = [
    *weekly(("XA-P1",), range(1, 2), cases=1_000_000),
    *weekly(DISTRICTS, range(1, 2), cases=100),
]


def push(node: Node, token: TokenRecord, rows: list[dict[str, Any]]) -> reports.StoredReport:
    batch = from_json_rows(node.registry.get("weekly_epi@1"), rows, node.validation)
    return reports.store(node.engine, batch=batch, token=token, idempotency_key=None, now=NOW)


def province_cases(node: Node) -> int:
    got, keys = exact_of(
        node, measures=("cases",), group_by=("area",), since="2026-W01", until="2026-W01"
    )
    return int(dict(zip(keys.axes[0].keys, got["cases"].tolist(), strict=True))["XA-P1"])


def test_a_province_and_its_districts_in_one_report_are_refused(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    response = client.post(PUSH, json={"rows": PROVINCE_AND_DISTRICTS}, headers=agency)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["total_errors"] == 3
    assert [(e["row"], e["field"], e["value"]) for e in problem["errors"]] == [
        (2, "area", "XA-P1-D1"),
        (3, "area", "XA-P1-D2"),
        (4, "area", "XA-P1-D3"),
    ]
    assert "inside XA-P1, which row 1 states" in problem["errors"][0]["detail"]
    assert "counted twice" in problem["detail"]
    assert stored_counts(node) == (0, 0)


def test_other_weeks_and_strata_may_mix_levels_in_one_report(node: Node) -> None:
    rows = [
        *weekly(("XA-P1",), range(1, 2), cases=7),
        *weekly(DISTRICTS, range(2, 3), cases=1),  # another week
        *[dict(r, sex="male") for r in weekly(DISTRICTS, range(1, 2), cases=1)],
        *weekly(("XA-P2-D1",), range(1, 2), cases=1),  # another province
    ]
    assert from_json_rows(node.registry.get("weekly_epi@1"), rows, node.validation).rows == 8


def test_a_national_row_and_any_area_in_one_report_are_refused(node: Node) -> None:
    rows = [*weekly(("XA-P3-D2",), range(1, 2)), *weekly(("XA",), range(1, 2))]
    try:
        from_json_rows(node.registry.get("weekly_epi@1"), rows, node.validation)
    except ReportValidationError as refused:
        assert [(e.row, e.value) for e in refused.errors] == [(1, "XA-P3-D2")]
    else:
        raise AssertionError("a district and the country for the same cell were accepted")


def test_districts_after_their_province_replace_it(node: Node) -> None:
    """The issue's example across reports: 1,000,000 + 3 x 100 must not become 1,000,300."""
    install_policy(node)
    token = agency(node)
    push(node, token, PROVINCE_AND_DISTRICTS[:1])
    stored = push(node, token, PROVINCE_AND_DISTRICTS[1:])
    assert province_cases(node) == 300  # not 1,000,300
    assert stored.superseded_rows == 1


def test_a_province_after_its_districts_replaces_them(node: Node) -> None:
    install_policy(node)
    token = agency(node)
    push(node, token, PROVINCE_AND_DISTRICTS[1:])
    stored = push(node, token, PROVINCE_AND_DISTRICTS[:1])
    assert province_cases(node) == 1_000_000  # not 1,000,300
    assert stored.superseded_rows == 3


def test_a_level_change_leaves_other_cells_and_the_history_alone(node: Node) -> None:
    install_policy(node)
    token = agency(node)
    first = push(node, token, weekly(DISTRICTS, range(1, 3), cases=100))  # weeks 1 and 2
    push(node, token, [dict(r, sex="male") for r in weekly(DISTRICTS, range(1, 2), cases=5)])
    push(node, token, weekly(("XA-P1",), range(1, 2), cases=250))  # week 1, female only
    table = cell_tables["weekly_epi@1"]
    with node.engine.connect() as conn:
        rows = conn.execute(
            select(table.c.area, table.c.week, table.c.sex, table.c.superseded_by)
        ).all()
    superseded = {(r.area, r.week, r.sex) for r in rows if r.superseded_by is not None}
    assert superseded == {(d, "2026-W01", "female") for d in DISTRICTS}
    assert len(rows) == 10  # nothing deleted: the replaced rows stay readable
    assert province_cases(node) == 250 + 3 * 5
    assert first.rows == 6


def test_a_dry_run_of_a_level_change_changes_nothing(node: Node) -> None:
    install_policy(node)
    token = agency(node)
    push(node, token, PROVINCE_AND_DISTRICTS[:1])
    batch = from_json_rows(
        node.registry.get("weekly_epi@1"), PROVINCE_AND_DISTRICTS[1:], node.validation
    )
    preview = reports.store(
        node.engine, batch=batch, token=token, idempotency_key=None, now=NOW, dry_run=True
    )
    assert preview.superseded_rows == 1
    assert province_cases(node) == 1_000_000
    push(node, token, PROVINCE_AND_DISTRICTS[1:])  # the temporary table works again after
    assert province_cases(node) == 300


AREAS = ("XA", "XA-P1", "XA-P2", "XA-P1-D1", "XA-P1-D2", "XA-P2-D1")
_weeks = itertools.count()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from(AREAS), st.integers(0, 1000)), min_size=1, max_size=4),
        min_size=1,
        max_size=5,
    )
)
def test_current_rows_never_overlap_and_the_latest_report_wins(
    node: Node, reports_in_order: list[list[tuple[str, int]]]
) -> None:
    """Any sequence of reports: each keeps only rows that overlap none before it in that
    report; the current rows are what a model of "the latest overlapping report wins" says."""
    n = next(_weeks)
    week = f"{2000 + n // 52}-W{n % 52 + 1:02d}"  # a week of its own for each example
    token, _secret = tokens.issue_token(
        node.engine, name=f"moh-{n}", role="agency", schemas=("weekly_epi@1",), now=NOW
    )
    gazetteer = node.gazetteer
    current: dict[str, int] = {}
    for stated in reports_in_order:
        kept: dict[str, int] = {}
        for code, cases in stated:
            if not any(_overlap(gazetteer, code, other) for other in kept):
                kept[code] = cases
        rows = [
            dict(weekly((code,), range(1, 2))[0], week=week, cases=n) for code, n in kept.items()
        ]
        push(node, token, rows)
        current = {
            c: n for c, n in current.items() if not any(_overlap(gazetteer, c, k) for k in kept)
        }
        current.update(kept)
    table = cell_tables["weekly_epi@1"]
    with node.engine.connect() as conn:
        stored = conn.execute(
            select(table.c.area, table.c.cases).where(
                table.c.week == week, table.c.superseded_by.is_(None)
            )
        ).all()
    assert dict(stored) == current
    assert len(stored) == len(current)


def _overlap(gazetteer: Any, a: str, b: str) -> bool:
    return a == b or a in gazetteer.ancestors(b) or b in gazetteer.ancestors(a)
