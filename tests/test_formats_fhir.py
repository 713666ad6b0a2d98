"""Releases as FHIR R4 MeasureReports, checked with the official ``fhir.resources`` models.

The releases were pulled for real (agency push, signed pull, stored), so the reports are
built from the very bytes a partner keeps; weeks are checked against the calendar (the
standard library's ISO calendar, the ``epiweeks`` package's MMWR weeks), not our helpers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from epiweeks import Week
from fhir.resources.R4B.measurereport import MeasureReport

from exchange.clients.release_view import COPY_TYPE, provided_document
from exchange.formats.fhir import BASE, DATA_ABSENT, GENDER, measure_canonical, measure_report
from nodes.database import reading
from nodes.releases import received, store
from schemas.standard import WEEKLY_EPI
from tests.release_formats_support import Pulled, pulled

EXT = f"{BASE}/StructureDefinition/"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulled]:
    with pulled(tmp_path_factory.mktemp("fhir")) as found:
        yield found


def _stored_document(world: Pulled, received_id: int) -> dict[str, Any]:
    return received.get(world.xa.node.engine, received_id).document


def _report(document: dict[str, Any], **options: Any) -> MeasureReport:
    options.setdefault("week_system", "iso")
    options.setdefault("schema", WEEKLY_EPI)
    return MeasureReport.model_validate(measure_report(document, **options))


def _ext(element: Any, name: str) -> Any:
    found = [e for e in element.extension or [] if e.url == EXT + name]
    assert len(found) == 1, name
    return found[0]


@pytest.mark.parametrize("which", ["districts", "national"])
def test_each_received_release_is_a_valid_summary_measure_report(world: Pulled, which: str) -> None:
    result = getattr(world, which)
    report = _report(_stored_document(world, result.received_id))
    assert report.status == "complete"
    assert report.type == "summary"
    assert report.measure == measure_canonical("weekly_epi@1")
    assert report.measure.endswith("/Measure/weekly_epi|1")
    assert [g.code.coding[0].code for g in report.group] == result.release["measures"]


def test_one_stratum_per_cell_with_the_released_values(world: Pulled) -> None:
    release = world.districts.release
    report = _report(_stored_document(world, world.districts.received_id))
    for group in report.group:
        measure = group.code.coding[0].code
        (stratifier,) = group.stratifier
        assert [c.coding[0].code for c in stratifier.code] == ["area", "week", "age_band"]
        assert len(stratifier.stratum) == len(release["cells"])
        for stratum, cell in zip(stratifier.stratum, release["cells"], strict=True):
            keys = {c.code.coding[0].code: c.value.coding[0].code for c in stratum.component}
            assert keys == {d: cell[d] for d in release["dimensions"]}
            if not cell[measure]["suppressed"]:
                assert stratum.measureScore.value == cell[measure]["value"]
            assert float(_ext(stratum, "accuracy").valueDecimal) == cell[measure]["accuracy"]


def test_suppressed_cells_are_masked_and_never_zero(world: Pulled) -> None:
    release = world.districts.release
    report = _report(_stored_document(world, world.districts.received_id))
    suppressed = 0
    for group in report.group:
        measure = group.code.coding[0].code
        for stratum, cell in zip(group.stratifier[0].stratum, release["cells"], strict=True):
            absent = [e for e in stratum.measureScore.extension or [] if e.url == DATA_ABSENT]
            if cell[measure]["suppressed"]:
                suppressed += 1
                assert stratum.measureScore.value is None
                assert [e.valueCode for e in absent] == ["masked"]
            else:
                assert absent == []
    assert suppressed > 0  # the policy suppresses small noisy values: the case is exercised


def test_noise_accuracy_and_epsilon_are_kept_as_extensions(world: Pulled) -> None:
    release = world.districts.release
    report = _report(_stored_document(world, world.districts.received_id))
    assert float(_ext(report, "epsilon-spent").valueDecimal) == release["epsilon_spent"]
    assert float(_ext(report, "release-epsilon").valueDecimal) == release["release_epsilon"]
    assert _ext(report, "policy-hash").valueString == release["policy_hash"]
    assert _ext(report, "week-system").valueCode == "iso"
    for group in report.group:
        measure = group.code.coding[0].code
        assert float(_ext(group, "accuracy").valueDecimal) == release["accuracy"][measure]
        assert float(_ext(group, "noise-scale").valueDecimal) == release["scale"][measure]
        assert _ext(group, "noise-mechanism").valueCode == release["mechanism"]
        assert float(_ext(group, "confidence").valueDecimal) == 0.95


def test_provenance_names_provider_recipient_and_release(world: Pulled) -> None:
    document = _stored_document(world, world.districts.received_id)
    report = _report(document)
    assert report.reporter.identifier.value == "XC"
    assert report.reporter.display == document["provider"]["name"]
    assert _ext(report, "recipient").valueIdentifier.value == "XA"
    (identifier,) = report.identifier
    assert identifier.value == str(document["release"]["release_id"])
    assert "/XC/" in identifier.system
    assert report.date.isoformat().startswith(document["release"]["created_at"][:19])


def test_the_period_covers_the_weeks_in_either_numbering(world: Pulled) -> None:
    document = _stored_document(world, world.national.received_id)
    since, until = (document["release"]["query"][k] for k in ("since", "until"))
    iso = _report(document, week_system="iso").period
    assert iso.start == dt.date.fromisocalendar(int(since[:4]), int(since[6:]), 1)
    assert iso.end == dt.date.fromisocalendar(int(until[:4]), int(until[6:]), 7)
    mmwr = _report(document, week_system="mmwr").period
    assert mmwr.start == Week(int(since[:4]), int(since[6:]), system="cdc").startdate()
    assert mmwr.end == Week(int(until[:4]), int(until[6:]), system="cdc").enddate()
    assert mmwr.start.weekday() == 6  # MMWR weeks start on Sunday


def test_sex_uses_fhir_administrative_gender_and_age_bands_their_labels() -> None:
    cell = {"value": 3, "suppressed": False, "accuracy": 1.5}
    document = {
        "provider": {"id": "XB", "name": "XB"},
        "release": {
            "release_id": 7,
            "schema": "weekly_epi@1",
            "query": {"group_by": ["sex", "age_band"], "since": "2026-W01", "until": "2026-W02"},
            "dimensions": ["sex", "age_band"],
            "measures": ["cases"],
            "cells": [{"sex": "female", "age_band": "0-4", "cases": cell}],
            "mechanism": "laplace",
        },
    }
    report = _report(document)
    sex, age = report.group[0].stratifier[0].stratum[0].component
    assert sex.value.coding[0].system == GENDER
    assert age.value.coding[0].display == "0-4 years"
    assert report.group[0].stratifier[0].stratum[0].measureScore.unit == "persons"


def test_a_release_without_a_week_range_is_refused_with_the_reason() -> None:
    document = {"release": {"release_id": 1, "query": {}, "dimensions": [], "measures": []}}
    with pytest.raises(ValueError, match=r"no week range"):
        measure_report(document, week_system="iso")


def test_the_provider_renders_its_own_release_the_same_way(world: Pulled) -> None:
    release = world.districts.release
    with reading(world.xc.node.engine) as conn:
        stored = store.get(conn, int(release["release_id"]))
    assert stored is not None
    document = provided_document(stored, node_id="XC", node_name="Kingdom of XC")
    assert document["type"] == COPY_TYPE
    assert document["release"]["cells"] == release["cells"]
    report = _report(document)
    assert report.reporter.identifier.value == "XC"
    assert len(report.group[0].stratifier[0].stratum) == len(release["cells"])
