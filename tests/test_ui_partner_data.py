"""Partner data pages on releases received for real: pulled, verified and stored in-process.

Three nodes: XA pulls from XC (provinces and districts by week, with suppression of small
noisy values, and one grouped by area only) and from XB (national totals). XC's name carries
markup, which every page must show as text.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import hxl
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.measurereport import MeasureReport

import tests.federation as fed
from exchange.clients.pulling import PullResult, pull
from exchange.demo.data import policy_yaml
from nodes.releases import received
from tests.conftest import NO_POSTGRES, POSTGRES_URL, postgres_schema_url
from tests.federation import Member, make_member, query, register, seed
from tests.ui_support import issue, sign_in, ui_client

_NAMES = itertools.count()
EVIL = '<script>alert("xc")</script> Kingdom & <b>XC</b>'
SVG = "{http://www.w3.org/2000/svg}"


def _policy(nation: fed.Nation) -> str:
    """The demo's policy, with districts, age bands and suppression for the close partner."""
    text = policy_yaml(nation).replace(
        "      area: {level: 1}\n      week: {period: week}\n",
        "      area: {level: 2}\n      week: {period: week}\n      age_band: {}\n",
        1,
    )
    return text.replace("    budget: {epsilon: 8, period: total}\n",
                        "    budget: {epsilon: 8, period: total}\n    suppress_below: 8\n", 1)  # fmt: skip


@dataclass
class Received:
    xa: Member
    provinces: PullResult  # XC -> XA, area:adm1 x week, cases and admissions, suppression
    national: PullResult  # XB -> XA, area:adm0 x week
    districts: PullResult  # XC -> XA, area:adm2 x week x age band: 1,152 cells
    by_area: PullResult  # XC -> XA, area:adm1 only: no week, no curve


def _urls(kind: str, stack: ExitStack) -> Iterator[str]:
    if kind == "sqlite":
        return itertools.repeat("")
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)

    def fresh() -> Iterator[str]:
        while True:
            yield stack.enter_context(contextmanager(postgres_schema_url)())

    return fresh()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Received]:
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        patch.setattr(fed, "policy_yaml", _policy)
        urls = _urls(request.param, stack)
        directory: Path = tmp_path_factory.mktemp("partner")
        nations = {**fed.BY_NATION, "XC": replace(fed.BY_NATION["XC"], name=EVIL)}
        members = {i: make_member(stack, directory, nations[i], next(urls)) for i in nations}
        for member in members.values():
            seed(member)
            for other in members.values():
                if other is not member:
                    register(member, other)
        xa, xb, xc = members["XA"], members["XB"], members["XC"]
        both = ("cases", "admissions")
        yield Received(
            xa,
            provinces=pull(xa.node, xa.client_to(xc), query("area:adm1", "week", measures=both)),
            national=pull(xa.node, xa.client_to(xb), query("area:adm0", "week")),
            districts=pull(
                xa.node, xa.client_to(xc), query("area:adm2", "week", "age_band", measures=both)
            ),
            by_area=pull(xa.node, xa.client_to(xc), query("area:adm1")),
        )


def _secret(world: Received, role: str) -> str:
    """A new token of ``role`` on XA (names are unique: the world is shared by the module)."""
    return issue(world.xa.node, role, name=f"{role}-{next(_NAMES)}")  # type: ignore[arg-type]


@pytest.fixture
def analyst(world: Received) -> Iterator[TestClient]:
    with TestClient(world.xa.app) as client:
        ui_client(client)
        sign_in(client, _secret(world, "analyst"))
        yield client


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_list_shows_every_release_newest_first_with_provider_purpose_and_epsilon(
    world: Received, analyst: TestClient
) -> None:
    page = analyst.get("/ui/received")
    assert page.status_code == 200
    links = re.findall(r'href="/ui/received/(\d+)"', page.text)
    ids = list(dict.fromkeys(int(i) for i in links))
    expected = [world.by_area, world.districts, world.national, world.provinces]
    assert ids == [r.received_id for r in expected]
    text = _text(page.text)
    assert "Federation of XB" in text
    assert "outbreak_response" in text
    assert "Weekly" in text or "weekly" in text
    assert text.count("Verified") >= 4
    assert world.provinces.key_id[:10] in page.text
    assert f"{world.provinces.release['epsilon_spent']:g}" in text


def test_the_list_pages(world: Received, analyst: TestClient) -> None:
    assert "Older releases" not in analyst.get("/ui/received").text
    beyond = analyst.get("/ui/received?page=2")
    assert beyond.status_code == 200
    assert "There are no releases on this page." in beyond.text
    assert analyst.get("/ui/received?page=0").status_code == 400
    assert analyst.get("/ui/received?page=x").status_code == 400


def test_markup_in_a_peer_name_is_shown_as_text(world: Received, analyst: TestClient) -> None:
    for url in ("/ui/received", f"/ui/received/{world.provinces.received_id}"):
        html = analyst.get(url).text
        assert "<script>alert" not in html
        assert "<b>XC</b>" not in html
        assert "&lt;script&gt;alert(" in html


def test_a_release_shows_provider_question_purpose_epsilon_and_its_verified_signature(
    world: Received, analyst: TestClient
) -> None:
    result = world.provinces
    page = analyst.get(f"/ui/received/{result.received_id}")
    assert page.status_code == 200
    text = _text(page.text)
    assert "XC" in text
    assert "outbreak_response" in text
    assert f"{result.release['query']['since']} – {result.release['query']['until']}" in text
    assert "adm1" in text
    signature = _text(page.text.split('id="signature"')[1].split("</dd>")[0])
    assert "Verified" in signature
    assert result.key_id in signature
    assert "has not changed since" in signature


def test_a_tampered_stored_release_says_it_does_not_verify(
    world: Received, analyst: TestClient
) -> None:
    stored = received.get(world.xa.node.engine, world.national.received_id)
    copy = received.store(
        world.xa.node.engine,
        peer_id=stored.peer_id,
        release_id=stored.release_id,
        schema_id=stored.schema_id,
        key_id=stored.key_id,
        cached=stored.cached,
        request=stored.request,
        response=replace(
            stored.response, body=stored.response.body.replace(b'"value":', b'"value": ', 1)
        ),
        now=stored.received_at,
    )
    page = analyst.get(f"/ui/received/{copy}")
    signature = _text(page.text.split('id="signature"')[1].split("</dd>")[0])
    assert "Does not verify" in signature
    assert "Verified" not in signature


def _figures(html: str) -> list[ET.Element]:
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    return [ET.fromstring(svg) for svg in svgs]


def test_each_area_gets_a_curve_with_its_band_and_its_data_table(
    world: Received, analyst: TestClient
) -> None:
    result = world.provinces
    areas = sorted({cell["area"] for cell in result.release["cells"]})
    page = analyst.get(f"/ui/received/{result.received_id}")
    svgs = _figures(page.text)
    assert len(svgs) == len(areas) == 4
    for svg, area in zip(svgs, areas, strict=True):
        assert area in (svg.findtext(f"{SVG}title") or "")
        assert svg.find(f"{SVG}path[@class='band']") is not None
    assert page.text.count('<details class="data">') == len(areas)
    assert "style=" not in page.text
    assert "95% accuracy" in page.text


def test_suppressed_cells_say_suppressed_and_are_not_drawn(
    world: Received, analyst: TestClient
) -> None:
    result = world.provinces
    hidden = [c for c in result.release["cells"] if c["cases"]["suppressed"]]
    assert hidden, "the policy suppresses noisy values below 8: early weeks fall under it"
    page = analyst.get(f"/ui/received/{result.received_id}?measure=cases")
    rows = re.findall(
        r"<tr>\s*<th scope=\"row\"><bdi>([^<]+)</bdi></th>\s*<td class=\"num( suppressed)?\">([^<]*)</td>",
        page.text,
    )
    assert len(rows) == len(result.release["cells"])
    marked = [week for week, flag, value in rows if flag]
    assert len(marked) == len(hidden)
    assert all(value == "suppressed" for _week, flag, value in rows if flag)
    markers = sum(
        len(svg.findall(f"{SVG}circle[@class='point-suppressed']")) for svg in _figures(page.text)
    )
    assert markers == len(hidden)


def test_another_measure_is_one_click_away_and_an_unknown_one_is_refused(
    world: Received, analyst: TestClient
) -> None:
    url = f"/ui/received/{world.provinces.received_id}"
    assert f'href="{url}?measure=admissions"' in analyst.get(url).text
    admissions = analyst.get(f"{url}?measure=admissions")
    assert admissions.status_code == 200
    assert "Admissions" in admissions.text or "admissions" in admissions.text
    assert analyst.get(f"{url}?measure=deaths").status_code == 422
    assert analyst.get(f"{url}?measure=%3Cb%3E").status_code == 400


def test_a_release_with_many_cells_pages_its_curves_and_stays_light(
    world: Received, analyst: TestClient
) -> None:
    result = world.districts
    assert len(result.release["cells"]) >= 1000
    page = analyst.get(f"/ui/received/{result.received_id}")
    assert len(page.content) < 200_000, len(page.content)
    assert len(_figures(page.text)) == 20
    assert "this page shows 1 to 20" in _text(page.text)
    curves = len({(c["area"], c["age_band"]) for c in result.release["cells"]})
    last = -(-curves // 20)
    second = analyst.get(f"/ui/received/{result.received_id}?page={last}")
    assert len(_figures(second.text)) == curves - 20 * (last - 1)
    assert "Next page" not in second.text


def test_a_release_without_weeks_is_a_table(world: Received, analyst: TestClient) -> None:
    result = world.by_area
    page = analyst.get(f"/ui/received/{result.received_id}")
    assert page.status_code == 200
    assert "<svg" not in page.text
    assert "no week dimension" in page.text
    for cell in result.release["cells"]:
        assert cell["area"] in page.text


def test_the_json_download_is_the_signed_bytes_exactly(
    world: Received, analyst: TestClient
) -> None:
    stored = received.get(world.xa.node.engine, world.provinces.received_id)
    answer = analyst.get(f"/ui/received/{stored.id}.json")
    assert answer.status_code == 200
    assert answer.content == stored.response.body
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-disposition"].startswith("attachment;")


def test_the_csv_download_has_every_cell(world: Received, analyst: TestClient) -> None:
    result = world.provinces
    answer = analyst.get(f"/ui/received/{result.received_id}.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == len(result.release["cells"])
    for row, cell in zip(rows, result.release["cells"], strict=True):
        assert (row["area"], row["week"]) == (cell["area"], cell["week"])
        expected = "" if cell["cases"]["suppressed"] else str(cell["cases"]["value"])
        assert row["cases"] == expected


def test_the_fhir_download_is_a_valid_measure_report_with_every_cell(
    world: Received, analyst: TestClient
) -> None:
    result = world.provinces
    answer = analyst.get(f"/ui/received/{result.received_id}.fhir.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/fhir+json"
    assert answer.headers["content-disposition"].startswith("attachment;")
    report = MeasureReport.model_validate_json(answer.content)
    cells = result.release["cells"]
    assert [g.code.coding[0].code for g in report.group] == ["cases", "admissions"]
    for group in report.group:
        measure = group.code.coding[0].code
        strata = group.stratifier[0].stratum
        assert len(strata) == len(cells)
        for stratum, cell in zip(strata, cells, strict=True):
            expected = None if cell[measure]["suppressed"] else cell[measure]["value"]
            assert stratum.measureScore.value == expected


def test_the_hxl_download_is_tagged_for_the_released_level(
    world: Received, analyst: TestClient
) -> None:
    result = world.provinces
    answer = analyst.get(f"/ui/received/{result.received_id}.hxl.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    data = hxl.data(list(csv.reader(io.StringIO(answer.text))))
    assert [c.display_tag for c in data.columns][:2] == ["#adm1+code", "#date+week"]
    rows = list(data)
    assert len(rows) == len(result.release["cells"])
    for row, cell in zip(rows, result.release["cells"], strict=True):
        assert row.get("#adm1+code") == cell["area"]
        assert row.get("#org+provider+code") == "XC"
        expected = "" if cell["cases"]["suppressed"] else str(cell["cases"]["value"])
        assert (row.get("#affected+cases") or "") == expected


def test_the_page_offers_the_fhir_and_hxl_downloads(world: Received, analyst: TestClient) -> None:
    page = analyst.get(f"/ui/received/{world.provinces.received_id}").text
    assert f'href="/ui/received/{world.provinces.received_id}.fhir.json"' in page
    assert f'href="/ui/received/{world.provinces.received_id}.hxl.csv"' in page


def test_an_unknown_release_is_a_404_page(world: Received, analyst: TestClient) -> None:
    for url in (
        "/ui/received/999999",
        "/ui/received/999999.csv",
        "/ui/received/999999.json",
        "/ui/received/999999.fhir.json",
        "/ui/received/999999.hxl.csv",
    ):
        answer = analyst.get(url)
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
        assert "received no release numbered 999999" in _text(answer.text)


@pytest.mark.parametrize("role", ["agency", "auditor"])
def test_other_roles_are_refused(world: Received, role: str) -> None:
    with TestClient(world.xa.app) as client:
        ui_client(client)
        sign_in(client, _secret(world, role))
        for url in (
            "/ui/received",
            f"/ui/received/{world.provinces.received_id}",
            f"/ui/received/{world.provinces.received_id}.csv",
            f"/ui/received/{world.provinces.received_id}.json",
            f"/ui/received/{world.provinces.received_id}.fhir.json",
            f"/ui/received/{world.provinces.received_id}.hxl.csv",
        ):
            answer = client.get(url)
            assert answer.status_code == 403, url
            assert "outbreak_response" not in answer.text


def test_operators_may_read_partner_data(world: Received) -> None:
    with TestClient(world.xa.app) as client:
        ui_client(client)
        sign_in(client, _secret(world, "operator"))
        assert client.get("/ui/received").status_code == 200


def test_without_a_session_the_pages_send_to_sign_in(world: Received) -> None:
    with TestClient(world.xa.app) as client:
        ui_client(client)
        answer = client.get(
            f"/ui/received/{world.provinces.received_id}.json", follow_redirects=False
        )
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/sign-in?next=")


@pytest.mark.parametrize("language", ["fr", "es", "ar"])
def test_the_pages_speak_the_readers_language(
    world: Received, analyst: TestClient, language: str
) -> None:
    analyst.cookies.set("exchange_lang", language)
    page = analyst.get(f"/ui/received/{world.provinces.received_id}")
    assert page.status_code == 200
    assert f'lang="{language}"' in page.text
    assert "Download as CSV" not in page.text
    assert "Partner data" not in analyst.get("/ui/received").text
