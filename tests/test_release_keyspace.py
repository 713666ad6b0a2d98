"""The full public key set of a release, coarsening, and which stored rows count."""

from __future__ import annotations

import numpy as np
import pytest

from policies.decision import ReleaseRequest, decide_with_keys
from policies.keyspace import KeySpace
from policies.node_policy import NodePolicy
from policies.query import ReleaseQuery
from tests.release_support import NOW, policy_from_text, sample_policy_text


@pytest.fixture(scope="module")
def policy() -> NodePolicy:
    return policy_from_text(sample_policy_text())


def space(policy: NodePolicy, partner: str = "XB", **query: object) -> KeySpace:
    fields: dict[str, object] = {"schema_id": "weekly_epi@1", "purpose": "outbreak_response"}
    fields.update(query)
    request = ReleaseRequest(partner, ReleaseQuery.model_validate(fields))
    decision, keys = decide_with_keys(request, policy, NOW)
    assert decision.allowed, decision.reasons
    assert keys is not None
    assert keys.size == decision.cells
    return keys


def test_every_allowed_key_is_present_and_red_lined_areas_are_not(policy: NodePolicy) -> None:
    keys = space(policy, group_by=("area", "week", "sex"), since="2026-W01", until="2026-W03")
    area, week, sex = keys.axes
    assert area.keys == ("XA-P1", "XA-P2", "XA-P3")
    assert week.keys == ("2026-W01", "2026-W02", "2026-W03")
    assert sex.keys == ("female", "male", "other", "unknown")
    assert keys.size == 3 * 3 * 4
    assert [c.stride for c in keys.columns] == [12, 4, 1]


def test_districts_roll_up_to_provinces_and_red_lined_rows_never_count(policy: NodePolicy) -> None:
    keys = space(policy, group_by=("area",), since="2026-W01", until="2026-W01")
    (area,) = keys.columns
    assert area.positions["XA-P2-D3"] == area.positions["XA-P2"] == 1
    for withheld in ("XA-P4", "XA-P4-D1", "XA"):  # the red-lined area, inside it, containing it
        assert withheld not in area.positions
    flat = keys.locate(4, [["XA-P1-D1", "XA-P3-D2", "XA-P4-D2", "XA"]])
    assert flat.tolist() == [0, 2, -1, -1]


def test_weeks_merge_into_months_by_their_middle_day(policy: NodePolicy) -> None:
    later = "2026-W13"
    keys = space(
        policy, partner="XC", purpose="situational_awareness", group_by=("week:month",), until=later
    )
    (month,) = keys.axes
    # The 28-day embargo ends at 2026-W07, before February is over: January is the last month.
    assert month.keys[-2:] == ("2025-12", "2026-01")
    week = keys.columns[0]
    assert week.positions["2026-W01"] == week.positions["2026-W05"] == len(month.keys) - 1
    assert week.positions["2025-W49"] == len(month.keys) - 2  # 2025-12-04, its Thursday
    assert "2026-W06" not in week.positions


def test_age_bands_merge_into_the_agreements_groups(policy: NodePolicy) -> None:
    keys = space(policy, group_by=("age_band",), since="2026-W01", until="2026-W01")
    (band,) = keys.axes
    assert band.keys == ("0-14", "15-44", "45+", "unknown")
    column = keys.columns[0]
    assert column.positions["0-4"] == column.positions["5-14"] == 0
    assert column.positions["65+"] == 2


def test_filters_restrict_the_key_set(policy: NodePolicy) -> None:
    keys = space(
        policy,
        group_by=("age_band",),
        filters={"age_band": ["45+"], "area": ["XA-P2"]},
        since="2026-W01",
        until="2026-W01",
    )
    (band,) = keys.axes
    assert band.keys == ("45+",)
    band_column, area_column = keys.columns
    assert "0-4" not in band_column.positions
    assert area_column.stride == 0  # a restriction, not an axis
    assert set(area_column.positions) == {"XA-P2", "XA-P2-D1", "XA-P2-D2", "XA-P2-D3"}


def test_coded_filters_on_dimensions_not_grouped_go_to_sql(policy: NodePolicy) -> None:
    keys = space(policy, group_by=("week",), filters={"age_band": ["0-14"]}, since="2026-W01")
    assert keys.where_in == {"age_band": frozenset({"0-4", "5-14"})}
    # the red line still needs the area column, to drop XA-P4 and the national rows
    assert [c.name for c in keys.columns] == ["week", "area"]


def test_totals_are_a_single_cell(policy: NodePolicy) -> None:
    keys = space(policy, since="2026-W01", until="2026-W02")
    assert keys.axes == ()
    assert keys.size == 1
    flat = keys.locate(2, [["XA-P1-D1", "XA-P4-D1"]])
    assert np.array_equal(flat, [0, -1])
