"""The pure DHIS2 converters: periods, the mapping's checks, the CSV form, conversion."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from epiweeks import Week

from exchange.formats import dhis2_values
from exchange.formats.dhis2 import ConflictsFoundError, IdSchemes, convert
from exchange.formats.dhis2_mapping import MappingError, compile_mapping, mapping_from_yaml
from exchange.formats.dhis2_periods import PeriodRefusal, place_period
from nodes.directory import sample_gazetteer
from schemas.periods import FIRST_YEAR, LAST_YEAR
from schemas.registry import SchemaRegistry
from schemas.validation import ValidationContext

DATA = Path(__file__).parent / "data" / "dhis2"
MAPPING_TEXT = (Path(__file__).parents[1] / "docs" / "examples" / "dhis2.yaml").read_text()
GAZETTEER = sample_gazetteer("XA")


def dhis2_week_start(year: int, week: int, first_day: int) -> dt.date:
    """DHIS2's weekly periods as its Java code defines them (``WeekFields.of(start, 4)``):
    week 1 is the first week, starting on ``first_day`` (0 = Monday), with at least 4 days
    in the year. Written from that rule, not from ``epiweeks``."""
    jan1 = dt.date(year, 1, 1)
    start = jan1 - dt.timedelta(days=(jan1.weekday() - first_day) % 7)
    if (jan1 - start).days > 3:  # fewer than 4 of its days in the year: week 1 is the next
        start += dt.timedelta(days=7)
    return start + dt.timedelta(weeks=week - 1)


@pytest.mark.parametrize(("system", "prefix", "first_day"), [("iso", "W", 0), ("mmwr", "SunW", 6)])
def test_dhis2_weeks_are_the_nodes_epi_weeks_in_every_year(
    system: Any, prefix: str, first_day: int
) -> None:
    library = "cdc" if system == "mmwr" else "iso"
    for year in range(FIRST_YEAR + 1, LAST_YEAR):
        for week in (1, 2, 52):
            placed = place_period(f"{year}{prefix}{week}", system, "weekly_epi@1")
            assert placed == f"{year}-W{week:02d}"
            assert Week(year, week, system=library).startdate() == dhis2_week_start(
                year, week, first_day
            )


def test_the_other_week_system_and_other_period_types_are_refused() -> None:
    for period, kind in [
        ("2026SunW5", "weekly starting Sunday"),
        ("202601", "monthly"),
        ("20260115", "daily"),
        ("2026Q1", "quarterly"),
        ("2026", "yearly"),
        ("2026BiW3", "bi-weekly"),
    ]:
        refused = place_period(period, "iso", "weekly_epi@1")
        assert isinstance(refused, PeriodRefusal)
        assert refused.known_type
        assert f"`{period}` is {kind};" in refused.reason
    assert isinstance(place_period("2026W5", "mmwr", "weekly_epi@1"), PeriodRefusal)
    nonsense = place_period("last week", "iso", "weekly_epi@1")
    assert isinstance(nonsense, PeriodRefusal)
    assert not nonsense.known_type
    no_week = place_period("2025W53", "iso", "weekly_epi@1")  # ISO 2025 has 52 weeks
    assert isinstance(no_week, PeriodRefusal)
    assert "52 weeks" in no_week.reason


def test_the_sample_mapping_is_valid() -> None:
    mapping = mapping_from_yaml(MAPPING_TEXT, SchemaRegistry(), GAZETTEER)
    assert mapping.data_elements["CODE"]["EPI_CASES"].measure == "cases"
    assert mapping.org_units["UID"]["ouXAP1D1000"] == "XA-P1-D1"
    assert dict(mapping.category_option_combos["UID"]["cMA65plusxx"]) == {
        "age_band": "65+",
        "sex": "male",
    }


def broken(change: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(MAPPING_TEXT)
    if change == "measure":
        document["data_elements"][1]["measure"] = "recoveries"
    elif change == "schema":
        document["data_elements"][2]["schema"] = "weekly_epi@9"
    elif change == "case_based":
        document["data_elements"][3]["schema"] = "line_list@1"
    elif change == "area":
        document["org_units"][0]["area"] = "XA-P9"
    elif change == "code":
        document["category_option_combos"][0]["dimensions"]["age_band"] = "0-5"
    elif change == "dimension":
        document["category_option_combos"][1]["dimensions"]["colour"] = "red"
    elif change == "uid":
        document["org_units"][1]["uid"] = "1bad"
    elif change == "twice":
        document["org_units"][2]["uid"] = document["org_units"][3]["uid"]
    elif change == "unknown_key":
        document["data_elements"][0]["measures"] = "cases"
    return document


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("measure", "'recoveries' is not a measure of weekly_epi@1"),
        ("schema", "no schema 'weekly_epi@9'"),
        ("case_based", "line_list@1 cannot take DHIS2 data values"),
        ("area", "area 'XA-P9' is not in this node's gazetteer"),
        ("code", "'0-5' is not a code of age_band"),
        ("dimension", "'colour' is not a coded dimension of weekly_epi@1"),
        ("uid", "'1bad' is not a DHIS2 UID"),
        ("twice", "uid 'ouXAP1D3000' is listed twice"),
        ("unknown_key", "data_elements.0.measures"),
    ],
)
def test_each_mistake_in_a_mapping_is_named(change: str, named: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping(broken(change), SchemaRegistry(), GAZETTEER)
    assert any(named in problem for problem in caught.value.problems), caught.value.problems


def test_csv_header_is_detected_and_columns_follow_dhis2s_order() -> None:
    with_header = dhis2_values.from_csv((DATA / "weekly.csv").read_text())
    without = dhis2_values.from_csv((DATA / "weekly_noheader.csv").read_text())
    assert with_header.count == 3
    assert without.data_element == ["deCases0001", "deDeaths001"]
    assert without.value == ["15", "2"]
    assert without.attribute_option_combo == ["HllvX50cXC0", "HllvX50cXC0"]
    assert with_header.data_element[:2] == without.data_element


def test_a_values_own_fields_override_the_sets() -> None:
    values = dhis2_values.from_json(json.loads((DATA / "weekly.json").read_text()))
    assert values.org_unit[-1] == "ouXAP1D2000"
    assert values.org_unit[0] == "ouXAP1D1000"
    assert set(values.period) == {"2026W5"}


def context(system: Any = "iso") -> ValidationContext:
    return ValidationContext(gazetteer=GAZETTEER, week_system=system)


def test_an_mmwr_node_takes_weekly_sunday_periods() -> None:
    mapping = mapping_from_yaml(MAPPING_TEXT, SchemaRegistry(), GAZETTEER)
    document = json.loads((DATA / "weekly.json").read_text())
    document["period"] = "2026SunW5"
    converted = convert(dhis2_values.from_json(document), mapping, IdSchemes(), context("mmwr"))
    assert set(converted.batch.columns["week"]) == {"2026-W05"}
    with pytest.raises(ConflictsFoundError) as caught:
        convert(dhis2_values.from_json(document), mapping, IdSchemes(), context("iso"))
    (conflict,) = caught.value.log.conflicts()
    assert (conflict.error_code, conflict.subject) == ("E7632", "2026SunW5")


@pytest.mark.parametrize(
    ("value", "code", "said"),
    [
        ("1.5", "E7619", "`1.5`"),
        ("-3", "E7619", "`-3`"),
        ("", "E7618", "not specified"),
        ("100000001", "E7619", "more than 100,000,000"),
    ],
)
def test_a_value_that_is_not_a_count_is_a_conflict(value: str, code: str, said: str) -> None:
    mapping = mapping_from_yaml(MAPPING_TEXT, SchemaRegistry(), GAZETTEER)
    document = json.loads((DATA / "weekly.json").read_text())
    document["dataValues"][2]["value"] = value
    with pytest.raises(ConflictsFoundError) as caught:
        convert(dhis2_values.from_json(document), mapping, IdSchemes(), context())
    (conflict,) = caught.value.log.conflicts()
    assert conflict.error_code == code
    assert said in conflict.value
    assert conflict.indexes == [2]


def test_two_values_for_one_cell_and_measure_are_a_conflict() -> None:
    mapping = mapping_from_yaml(MAPPING_TEXT, SchemaRegistry(), GAZETTEER)
    document = json.loads((DATA / "weekly.json").read_text())
    document["dataValues"].append(dict(document["dataValues"][0], value="13"))
    with pytest.raises(ConflictsFoundError) as caught:
        convert(dhis2_values.from_json(document), mapping, IdSchemes(), context())
    (conflict,) = caught.value.log.conflicts()
    assert conflict.indexes == [0, 7]


def test_absent_values_can_be_refused() -> None:
    document = yaml.safe_load(MAPPING_TEXT)
    document["schemas"]["weekly_epi@1"]["absent_values"] = "refuse"
    mapping = compile_mapping(document, SchemaRegistry(), GAZETTEER)
    values = dhis2_values.from_json(json.loads((DATA / "weekly.json").read_text()))
    with pytest.raises(ConflictsFoundError) as caught:
        convert(values, mapping, IdSchemes(), context())
    missing = {c.value.split(" states no ")[1].split(";")[0] for c in caught.value.log.conflicts()}
    assert missing == {"deaths", "admissions", "tests"}
