"""From DHIS2 to a partner's tools: a data value set pushed to XA as DHIS2 would push it,
a signed pull by XB, and XB's stored release rendered as FHIR (checked with the official
models) and as HXL (read back with libhxl). The pushed count is large enough that its cell
stands out of the noise, so the test can see that the DHIS2 value is what reached XB."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hxl
import pytest
from fhir.resources.R4B.measurereport import MeasureReport
from sqlalchemy import func, select

from exchange.clients.pulling import pull
from exchange.formats.fhir import measure_report
from exchange.formats.hxl_export import release_hxl
from nodes.releases import received
from nodes.tables import cell_tables
from schemas.standard import WEEKLY_EPI
from tests.federation import Member, federation, query, weeks

MAPPING = Path(__file__).parents[1] / "docs" / "examples" / "dhis2.yaml"
HUGE = 5_000_000  # far above the demo outbreak's counts and their noise


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Member]]:
    with ExitStack() as stack:
        members = federation(
            stack, tmp_path_factory.mktemp("round-trip"), iter(["", ""]), ("XA", "XB")
        )
        shutil.copy(MAPPING, members["XA"].settings.directory / "dhis2.yaml")
        yield members


def data_value_set(week: str) -> dict[str, Any]:
    """Cases for two age-and-sex cells of district XA-P1-D1, as DHIS2 writes them."""
    year, number = week.split("-W")
    return {
        "dataSet": "dsWeeklyEpi",
        "period": f"{year}W{int(number)}",
        "orgUnit": "ouXAP1D1000",
        "dataValues": [
            {
                "dataElement": "deCases0001",
                "categoryOptionCombo": "cFA00to04xx",
                "value": str(HUGE),
            },
            {"dataElement": "deCases0001", "categoryOptionCombo": "cMA00to04xx", "value": "7"},
        ],
    }


def exact_cases(member: Member, area_prefix: str, week: str) -> int:
    """The exact current total the release adds noise to, read straight from the table."""
    table = cell_tables["weekly_epi@1"]
    with member.node.engine.connect() as conn:
        total = conn.execute(
            select(func.sum(table.c.cases)).where(
                table.c.superseded_by.is_(None),
                table.c.week == week,
                table.c.area.startswith(area_prefix),
            )
        ).scalar_one()
    return int(total or 0)


def test_a_dhis2_value_reaches_the_partner_as_fhir_and_hxl(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    week = weeks()[len(weeks()) // 2]
    pushed = xa.http.post(
        "/api/dataValueSets",
        content=json.dumps(data_value_set(week)),
        headers={
            "Authorization": f"ApiToken {xa.agency_token}",
            "Content-Type": "application/json",
        },
    )
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["response"]["importCount"]["updated"] == 2  # seeded cells corrected
    exact = exact_cases(xa, "XA-P1", week)
    assert exact >= HUGE

    result = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    document = received.get(xb.node.engine, result.received_id).document
    cell = next(
        c for c in document["release"]["cells"] if (c["area"], c["week"]) == ("XA-P1", week)
    )
    released, accuracy = cell["cases"]["value"], cell["cases"]["accuracy"]
    # Laplace noise beyond 20 times its 95% half-width has probability below e^-60.
    assert abs(released - exact) <= 20 * accuracy

    report = MeasureReport.model_validate(
        measure_report(document, week_system=xb.settings.week_system, schema=WEEKLY_EPI)
    )
    strata = {
        tuple(c.value.coding[0].code for c in s.component): s
        for s in report.group[0].stratifier[0].stratum
    }
    assert strata[("XA-P1", week)].measureScore.value == released
    assert report.reporter.identifier.value == "XA"

    rows = list(hxl.data(io.BytesIO(release_hxl(document, schema=WEEKLY_EPI).encode())))
    row = next(r for r in rows if (r.get("#adm1+code"), r.get("#date+week")) == ("XA-P1", week))
    assert int(row.get("#affected+cases")) == released
    assert row.get("#org+provider+code") == "XA"
