"""The exact aggregate: SQL over current rows, laid over the full key set, checked against a
brute-force count in Python, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from nodes import aggregates
from nodes.database import reading
from nodes.node import Node
from policies.decision import ReleaseRequest, decide_with_keys
from policies.query import ReleaseQuery
from schemas.periods import month_of_week
from tests.release_support import NOW, agency, install_policy, push, weekly

ROWS: list[dict[str, Any]] = [
    *weekly(("XA-P1-D1", "XA-P1-D2", "XA-P2-D3"), range(1, 7), cases=3),
    *weekly(("XA-P4-D1",), range(1, 7), cases=50),  # red-lined: never counts
    *weekly(("XA-P3",), range(1, 3), cases=7),  # stated for a province
    # national, for another stratum (a report states each person once): contains XA-P4
    *[dict(r, sex="male") for r in weekly(("XA",), range(1, 3), cases=100)],
]


def exact_of(node: Node, partner: str = "XB", **query: Any) -> tuple[dict[str, Any], Any]:
    fields: dict[str, Any] = {"schema_id": "weekly_epi@1", "purpose": "outbreak_response"}
    fields.update(query)
    request = ReleaseRequest(partner, ReleaseQuery.model_validate(fields))
    decision, keys = decide_with_keys(request, node.policy, NOW)
    assert decision.allowed
    assert keys is not None
    assert decision.effective is not None
    with reading(node.engine) as conn:
        return aggregates.exact(conn, keys, decision.effective.measures), keys


def test_districts_roll_up_and_zero_cells_are_present(node: Node) -> None:
    install_policy(node)
    token = agency(node)
    push(node, token, "weekly_epi@1", ROWS)
    # A correction: XA-P1-D1 week 2 was 3 cases, now 10.
    push(node, token, "weekly_epi@1", weekly(("XA-P1-D1",), range(2, 3), cases=10))
    got, keys = exact_of(
        node,
        measures=("cases", "admissions"),
        group_by=("area", "week"),
        since="2026-W01",
        until="2026-W08",
    )
    area, week = keys.axes
    assert area.keys == ("XA-P1", "XA-P2", "XA-P3")
    assert len(week.keys) == 8
    expected = Counter[tuple[str, str]]()
    for row in [*ROWS, {"area": "XA-P1-D1", "week": "2026-W02", "cases": 10 - 3}]:
        code = str(row["area"])
        if code.startswith("XA-P4") or code == "XA":
            continue
        expected[(node.gazetteer.ancestor(code, 1), str(row["week"]))] += int(row["cases"])
    cells = got["cases"].reshape(len(area.keys), len(week.keys))
    for i, a in enumerate(area.keys):
        for j, w in enumerate(week.keys):
            assert cells[i, j] == expected[(a, w)], (a, w)
    assert got["cases"].dtype == np.int64
    assert cells[:, 6:].sum() == 0  # weeks 7 and 8 have no rows: zero cells, still released
    assert got["admissions"].sum() == 1 * (3 * 6 + 2)  # one admission per current row


def test_national_totals_leave_out_red_lined_data(node: Node) -> None:
    install_policy(node)
    push(node, agency(node), "weekly_epi@1", ROWS)
    got, keys = exact_of(node, measures=("cases",), since="2026-W01", until="2026-W06")
    assert keys.size == 1
    assert got["cases"].tolist() == [3 * 3 * 6 + 7 * 2]  # no XA-P4, no national rows


def test_filters_and_groups(node: Node) -> None:
    install_policy(node)
    rows = weekly(("XA-P1-D1", "XA-P2-D1"), range(1, 3), cases=2)
    rows += [dict(r, age_band="65+", cases=5) for r in rows]
    push(node, agency(node), "weekly_epi@1", rows)
    got, keys = exact_of(
        node,
        measures=("cases",),
        group_by=("age_band",),
        filters={"area": ["XA-P2"]},
        since="2026-W01",
        until="2026-W02",
    )
    (band,) = keys.axes
    assert dict(zip(band.keys, got["cases"].tolist(), strict=True)) == {
        "0-14": 0,
        "15-44": 2 * 2,
        "45+": 5 * 2,
        "unknown": 0,
    }


def test_months_sum_their_weeks(node: Node) -> None:
    install_policy(node)
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1",), range(1, 10), cases=1))
    got, keys = exact_of(
        node,
        partner="XC",
        purpose="situational_awareness",
        group_by=("week:month",),
        until="2026-W09",
    )
    (month,) = keys.axes
    by_month = Counter(month_of_week(f"2026-W{w:02d}", "iso") for w in range(1, 10))
    assert (
        dict(zip(month.keys, got["cases"].tolist(), strict=True))["2026-01"] == by_month["2026-01"]
    )


def test_case_based_rows_are_counted(node: Node) -> None:
    install_policy(node)
    cases = [
        {
            "case_id": f"C{i}",
            "area": "XA-P1-D1" if i % 3 else "XA-P2-D2",
            "onset_date": None,
            "report_date": "2026-01-14",
            "age_band": "25-44",
            "sex": "male",
            "outcome": "recovered",
        }
        for i in range(30)
    ]
    push(node, agency(node), "line_list@1", cases)
    got, keys = exact_of(
        node, schema_id="line_list@1", group_by=("area",), since="2026-W01", until="2026-W04"
    )
    (area,) = keys.axes
    assert dict(zip(area.keys, got["cases"].tolist(), strict=True)) == {
        "XA-P1": 20,
        "XA-P2": 10,
        "XA-P3": 0,
    }


def test_a_coded_filter_on_a_dimension_not_grouped_is_applied_in_sql(node: Node) -> None:
    install_policy(node)
    rows = weekly(("XA-P1-D1",), range(1, 3), cases=2)
    rows += [dict(r, age_band="65+", cases=5) for r in rows]
    push(node, agency(node), "weekly_epi@1", rows)
    got, keys = exact_of(
        node,
        measures=("cases",),
        group_by=("area",),
        filters={"age_band": ["45+"]},
        since="2026-W01",
        until="2026-W02",
    )
    assert keys.where_in == {"age_band": frozenset({"45-64", "65+"})}
    assert got["cases"].tolist() == [5 * 2, 0, 0]
