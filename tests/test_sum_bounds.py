"""Sums cannot overflow: every measure is bounded at push by the maximum its schema declares,
and the largest legal sum over the largest legal key set fits int64 with room for noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from nodes.directory import sample_gazetteer
from nodes.node import Node
from policies import privacy
from schemas.codelists import CODE_LISTS
from schemas.gazetteer import MAX_AREAS, Area, Gazetteer
from schemas.model import SUM_LIMIT, SchemaKind
from schemas.periods import FIRST_YEAR, LAST_YEAR, MAX_WEEKS, weeks_in_year
from schemas.standard import STANDARD_SCHEMAS, WEEKLY_EPI, WEEKLY_MAXIMUM
from tests.release_support import agency, install_policy, push, weekly
from tests.samples import as_csv, weekly_rows
from tests.test_push_api import stored_counts
from tests.test_release_aggregate import exact_of

PUSH = "/v1/reports/weekly_epi@1"
INT64_MAX = 2**63 - 1
MAXIMUM = WEEKLY_MAXIMUM


@pytest.mark.parametrize("value", [MAXIMUM + 1, 2**62 - 1])
def test_a_value_above_the_schema_maximum_is_refused_and_nothing_is_stored(
    client: TestClient, agency: dict[str, str], node: Node, value: int
) -> None:
    """2^62 - 1 was accepted before: a few such cells wrapped a province's sum silently."""
    rows = weekly_rows()
    for row in rows[:3]:
        row["cases"] = value
    as_json = client.post(PUSH, json={"rows": rows}, headers=agency)
    csv_headers = {**agency, "Content-Type": "text/csv"}
    as_text = client.post(PUSH, content=as_csv(rows).encode(), headers=csv_headers)
    for response, first in ((as_json, 1), (as_text, 2)):  # a CSV's header is line 1
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["total_errors"] == 3
        assert [(e["row"], e["field"]) for e in problem["errors"]] == [
            (first, "cases"),
            (first + 1, "cases"),
            (first + 2, "cases"),
        ]
        assert "more than 100,000,000, the most one cell may state" in problem["detail"]
    assert stored_counts(node) == (0, 0)


def test_the_maximum_itself_is_accepted_and_sums_exactly(node: Node) -> None:
    """Every stratum of three districts at the maximum for five weeks: the province and
    national sums are exact on both backends (SQLite's sum raises on overflow; numpy wraps)."""
    install_policy(node)
    rows = [
        dict(row, age_band=band, sex=sex, cases=MAXIMUM, admissions=MAXIMUM)
        for row in weekly(("XA-P1-D1", "XA-P1-D2", "XA-P1-D3"), range(1, 6))
        for band in CODE_LISTS["age_band"].ordered()
        for sex in CODE_LISTS["sex"].ordered()
    ]
    push(node, agency(node), "weekly_epi@1", rows)
    got, _keys = exact_of(
        node,
        measures=("cases", "admissions"),
        group_by=("area",),
        since="2026-W01",
        until="2026-W05",
    )
    assert got["cases"].tolist() == [len(rows) * MAXIMUM, 0, 0]
    national, _ = exact_of(node, measures=("admissions",), since="2026-W01", until="2026-W05")
    assert national["admissions"].tolist() == [len(rows) * MAXIMUM]


def test_the_largest_legal_key_set_is_what_the_argument_counts() -> None:
    for system in ("iso", "mmwr"):
        weeks = sum(weeks_in_year(y, system) for y in range(FIRST_YEAR, LAST_YEAR + 1))
        assert weeks <= MAX_WEEKS
    assert WEEKLY_EPI.cells_per_value() == MAX_AREAS * MAX_WEEKS * 7 * 4 == 100_000 * 15_953 * 28
    too_many = [Area(code="X", name="X", level=0)]
    too_many += [Area(code=f"X{i}", name="d", level=1, parent="X") for i in range(MAX_AREAS)]
    with pytest.raises(ValidationError, match=f"at most {MAX_AREAS}"):
        Gazetteer(areas=tuple(too_many))


@pytest.mark.parametrize("schema", [s for s in STANDARD_SCHEMAS if s.kind == SchemaKind.AGGREGATE])
def test_the_largest_legal_sum_fits_int64_with_room_for_noise(schema: object) -> None:
    from schemas.model import ReportSchema

    assert isinstance(schema, ReportSchema)
    for measure in schema.measures:
        assert measure.maximum is not None
        largest = schema.largest_sum(measure.name)
        assert largest == schema.cells_per_value() * measure.maximum
        assert largest <= SUM_LIMIT == 2**62
        assert largest + SUM_LIMIT <= INT64_MAX + 1  # the noise has 2^62 to spare


def test_a_schema_whose_sums_could_overflow_is_refused() -> None:
    cases = WEEKLY_EPI.measure_by_name["cases"]
    bigger = cases.model_copy(update={"maximum": 2 * MAXIMUM})
    with pytest.raises(ValidationError, match="sums of cases could exceed"):
        type(WEEKLY_EPI).model_validate(
            WEEKLY_EPI.model_dump() | {"measures": (bigger.model_dump(), *WEEKLY_EPI.measures[1:])}
        )


def test_the_lay_over_and_the_noise_at_the_bound_do_not_overflow() -> None:
    """numpy's int64 add wraps silently: lay groups summing to the largest legal total onto
    one cell, then noise it with the real mechanism."""
    largest = WEEKLY_EPI.largest_sum("cases")
    groups = np.full(28, largest // 28, dtype=np.int64)
    cells = np.zeros(2, dtype=np.int64)
    np.add.at(cells, np.zeros(28, dtype=np.int64), groups)
    assert int(cells[0]) == 28 * (largest // 28) == largest
    cost = privacy.plan("laplace", {"cases": 1}, epsilon=0.5, delta=None)
    noisy = privacy.noisy(cost, {"cases": cells})["cases"]
    assert abs(int(noisy[0]) - largest) < 1_000
    assert abs(int(noisy[1])) < 1_000


@given(st.lists(st.integers(0, MAXIMUM), min_size=1, max_size=50), st.integers(1, 5))
def test_laid_over_sums_equal_python_sums(values: list[int], width: int) -> None:
    where = np.arange(len(values), dtype=np.int64) % width
    cells = np.zeros(width, dtype=np.int64)
    np.add.at(cells, where, np.asarray(values, dtype=np.int64))
    expected = [sum(values[i::width]) for i in range(width)]
    assert cells.tolist() == expected
    assert math.fsum(values) <= len(values) * MAXIMUM


def test_the_sample_gazetteer_is_far_below_the_bound() -> None:
    assert len(sample_gazetteer("XA", 25, 10).areas) < MAX_AREAS
