"""The pure schema layer: periods, gazetteer, code lists, labels, column validation."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nodes.directory import sample_gazetteer
from schemas.codelists import AGE_BAND, CODE_LISTS
from schemas.errors import ROW_MESSAGES
from schemas.gazetteer import Area, Gazetteer
from schemas.labels import LANGUAGES
from schemas.model import StockOverTimeError
from schemas.periods import InvalidWeekError, month_of_week, parse_week, week_of, weeks_between
from schemas.registry import SchemaRegistry, UnknownSchemaError
from schemas.standard import HOSPITAL_CAPACITY, WEEKLY_EPI
from schemas.validation import (
    ReportShapeError,
    ReportValidationError,
    ValidationContext,
    from_csv_rows,
    from_json_rows,
)

GAZETTEER = sample_gazetteer("XA")
CTX = ValidationContext(gazetteer=GAZETTEER, week_system="iso")
DISTRICTS = [a.code for a in GAZETTEER.areas if a.level == 2]


def test_iso_and_mmwr_disagree_at_new_year() -> None:
    assert week_of(dt.date(2026, 1, 1), "iso") == "2026-W01"
    assert week_of(dt.date(2026, 1, 1), "mmwr") == "2025-W53"
    assert parse_week("2025-W53", "mmwr") == "2025-W53"
    with pytest.raises(InvalidWeekError, match="52 weeks"):
        parse_week("2025-W53", "iso")


@pytest.mark.parametrize("text", ["2026W5", "2026-W5", "2026-W05"])
def test_week_spellings_normalize(text: str) -> None:
    assert parse_week(text, "iso") == "2026-W05"


@pytest.mark.parametrize("text", ["2026-05", "W05", "2026-W00", "1800-W01", "2026-W1 ", ""])
def test_not_weeks(text: str) -> None:
    with pytest.raises(InvalidWeekError):
        parse_week(text, "iso")


def test_weeks_fall_in_one_month_and_ranges_are_complete() -> None:
    assert month_of_week("2026-W05", "iso") == "2026-01"  # Mon 26 Jan: Thursday is 29 Jan
    assert month_of_week("2026-W06", "iso") == "2026-02"
    assert weeks_between("2025-W51", "2026-W02", "iso") == [
        "2025-W51",
        "2025-W52",
        "2026-W01",
        "2026-W02",
    ]


def test_gazetteer_rolls_up_and_refuses_broken_trees() -> None:
    assert GAZETTEER.ancestor("XA-P2-D3", 1) == "XA-P2"
    assert GAZETTEER.ancestor("XA-P2-D3", 0) == "XA"
    assert GAZETTEER.at_level(1) == ("XA-P1", "XA-P2", "XA-P3", "XA-P4")
    with pytest.raises(ValidationError, match="unknown parent"):
        Gazetteer(
            areas=(
                Area(code="XA", name="x", level=0),
                Area(code="XA-1", name="y", level=1, parent="XB"),
            )
        )
    with pytest.raises(ValidationError, match="exactly one root"):
        Gazetteer(areas=(Area(code="XA", name="x", level=0), Area(code="XB", name="y", level=0)))
    with pytest.raises(ValidationError, match="one level up"):
        Gazetteer(
            areas=(
                Area(code="XA", name="x", level=0),
                Area(code="XA-1", name="y", level=2, parent="XA"),
            )
        )


def test_gazetteer_csv_round_trip_and_iso3166() -> None:
    assert Gazetteer.from_csv_text(GAZETTEER.to_csv_text()) == GAZETTEER
    haiti = Gazetteer.from_iso3166("HT")
    assert haiti.root.code == "HT"
    assert "HT-OU" in haiti.codes


def test_every_label_is_in_four_languages() -> None:
    for schema in SchemaRegistry():
        labels = [schema.label, schema.description]
        labels += [f.label for f in schema.fields] + [f.description for f in schema.fields]
        labels += [m.label for m in schema.measures] + [m.description for m in schema.measures]
        for label in labels:
            assert all(label.get(lang).strip() for lang in LANGUAGES)
    for codelist in CODE_LISTS.values():
        assert all(c.label.get(lang) for c in codelist.codes for lang in LANGUAGES)


def test_registry_is_immutable_once_published() -> None:
    registry = SchemaRegistry()
    registry.publish(WEEKLY_EPI)  # the same definition again is fine
    changed = WEEKLY_EPI.model_copy(update={"dimensions": ("area", "week")})
    with pytest.raises(ValueError, match="new version"):
        registry.publish(changed)
    with pytest.raises(UnknownSchemaError, match="weekly_epi@1"):
        registry.get("weekly_epi@2")


def test_a_stock_cannot_be_summed_over_time() -> None:
    HOSPITAL_CAPACITY.check_aggregation("beds_occupied", "area")
    with pytest.raises(StockOverTimeError, match="stock"):
        HOSPITAL_CAPACITY.check_aggregation("beds_occupied", "week")
    WEEKLY_EPI.check_aggregation("cases", "week")


def test_age_bands_carry_inclusive_bounds() -> None:
    band = AGE_BAND.get("0-4")
    assert (band.min_age, band.max_age) == (0, 4)
    assert AGE_BAND.get("65+").max_age is None


row_strategy = st.fixed_dictionaries(
    {
        "area": st.sampled_from(DISTRICTS),
        "week": st.integers(1, 52).map(lambda w: f"2026-W{w:02d}"),
        "age_band": st.sampled_from(AGE_BAND.ordered()),
        "sex": st.sampled_from(CODE_LISTS["sex"].ordered()),
        "cases": st.integers(0, 10**6),
        "deaths": st.integers(0, 100),
        "admissions": st.integers(0, 100),
        "tests": st.integers(0, 10**6),
    }
)
unique_rows = st.lists(
    row_strategy,
    min_size=1,
    max_size=40,
    unique_by=lambda r: (r["area"], r["week"], r["age_band"], r["sex"]),
)


@settings(max_examples=60, deadline=None)
@given(rows=unique_rows)
def test_valid_reports_are_accepted_alike_as_json_and_csv(rows: list[dict[str, object]]) -> None:
    header = list(rows[0])
    as_json = from_json_rows(WEEKLY_EPI, rows, CTX)
    as_csv = from_csv_rows(WEEKLY_EPI, header, [[str(r[h]) for h in header] for r in rows], CTX)
    assert as_json.rows == as_csv.rows == len(rows)
    assert as_json.content_sha256() == as_csv.content_sha256()
    assert as_json.columns["cases"] == [r["cases"] for r in rows]


BAD_VALUES = {
    "area": ["XB-P1", "", "xa-p1-d1"],
    "week": ["2025-W53", "2026-13", "W1"],
    "age_band": ["0-5", "adult"],
    "sex": ["F", ""],
    "cases": [-1, "3", 1.5, True, None, 2**62],
}


@settings(max_examples=80, deadline=None)
@given(rows=unique_rows, data=st.data())
def test_one_bad_value_is_reported_with_its_row_and_field(
    rows: list[dict[str, object]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    value = data.draw(st.sampled_from(BAD_VALUES[field]))
    rows = [dict(r) for r in rows]
    rows[index][field] = value
    with pytest.raises(ReportValidationError) as caught:
        from_json_rows(WEEKLY_EPI, rows, CTX)
    assert caught.value.total == 1
    error = caught.value.errors[0]
    assert (error.row, error.field) == (index + 1, field)
    assert error.code in ROW_MESSAGES
    assert "{" not in error.reason


def test_a_cell_stated_twice_is_refused() -> None:
    row = {
        "area": "XA-P1-D1",
        "week": "2026-W01",
        "age_band": "0-4",
        "sex": "male",
        "cases": 1,
        "deaths": 0,
        "admissions": 0,
        "tests": 1,
    }
    with pytest.raises(ReportValidationError, match="same cell as row 1"):
        from_json_rows(WEEKLY_EPI, [row, {**row, "cases": 2}], CTX)
    text = [list(map(str, row.values())), list(map(str, {**row, "cases": 2}.values()))]
    with pytest.raises(ReportValidationError) as caught:  # a CSV's rows are its lines
        from_csv_rows(WEEKLY_EPI, list(row), text, CTX)
    (error,) = caught.value.errors
    assert (error.row, error.code, error.params) == (3, "duplicate_cell", {"first_row": 2})


def test_shape_errors_name_the_fields() -> None:
    with pytest.raises(ReportShapeError, match="colour"):
        from_csv_rows(WEEKLY_EPI, ["area", "colour"], [], CTX)
    with pytest.raises(ReportShapeError, match="required field"):
        from_json_rows(WEEKLY_EPI, [{"area": "XA-P1-D1"}], CTX)
