"""An agency in a real browser: upload a good file (stored) and a bad one (nothing stored),
read its reports and the schema reference, in every language, with a screenshot of each page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from exchange.demo.cluster import DemoNode
from exchange.demo.walkthrough import DemoResult
from nodes import reports
from schemas.labels import LANGUAGES
from tests.browser_support import arrive, shoot, sign_in_as

pytestmark = pytest.mark.slow

SCHEMA = "weekly_epi@1"
HEADER = "area,week,age_band,sex,cases,deaths,admissions,tests"
#: Long before the demo's outbreak, so these uploads correct none of its cells.
WEEK = {"en": "2020-W10", "fr": "2020-W11", "es": "2020-W12", "ar": "2020-W13"}


def good_csv(node: DemoNode, week: str) -> str:
    """Eight valid rows: two districts of the node's gazetteer, two sexes, two age bands."""
    districts = node.opened.gazetteer.at_level(node.opened.gazetteer.max_level)[:2]
    lines = [HEADER]
    for area in districts:
        for sex in ("female", "male"):
            for band in ("5-14", "25-44"):
                lines.append(f"{area},{week},{band},{sex},7,0,1,20")
    return "\n".join(lines) + "\n"


def bad_csv(node: DemoNode, week: str) -> str:
    lines = good_csv(node, week).splitlines()
    lines[1] = lines[1].replace(",7,", ",seven,")
    lines[3] = "XA-NOWHERE" + lines[3][lines[3].index(",") :]
    lines[5] = lines[5].replace(week, "2020-W77")
    return "\n".join(lines) + "\n"


def stored(node: DemoNode) -> tuple[int, int]:
    """Reports and rows the node holds for the schema."""
    [found] = [s for s in reports.summary(node.opened.engine) if s["schema"] == SCHEMA]
    return int(str(found["reports"])), int(str(found["rows"]))


def present(browser: Any, element_id: str) -> Any:
    """The element, once the page that holds it has loaded (a click returns before that)."""
    return WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def choose(browser: Any, path: Path) -> None:
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_agency_uploads_checks_stores_and_reads_back(
    demo: DemoResult, browser: Any, language: str, tmp_path: Path
) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, "agency", language=language)
    browser.get(f"{xa.url}/ui/upload")
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("lang") == language
    assert html.get_attribute("dir") == ("rtl" if language == "ar" else "ltr")
    assert browser.find_element(By.CSS_SELECTOR, ".dropzone-hint").is_displayed()  # script ran
    shoot(browser, "agency-upload-form", language)

    before = stored(xa)
    good = tmp_path / f"week-{language}.csv"
    good.write_text(good_csv(xa, WEEK[language]))
    choose(browser, good)
    assert present(browser, "rows-to-store").text == "8"
    assert stored(xa) == before  # the check stores nothing
    shoot(browser, "agency-upload-preview", language)

    browser.find_element(By.ID, "store").click()
    assert present(browser, "rows-stored").text == "8"
    assert stored(xa) == (before[0] + 1, before[1] + 8)
    shoot(browser, "agency-upload-stored", language)
    receipt = browser.find_element(By.CSS_SELECTOR, "#receipt a").get_attribute("href")

    browser.get(f"{xa.url}/ui/reports")
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#reports a")]
    assert links[0] == receipt  # newest first
    shoot(browser, "agency-reports", language)

    browser.get(receipt)
    rows = browser.find_elements(By.CSS_SELECTOR, "#stored-rows tbody tr")
    assert len(rows) == 8
    shoot(browser, "agency-report", language)

    bad = tmp_path / f"bad-{language}.csv"
    bad.write_text(bad_csv(xa, WEEK[language]))
    browser.get(f"{xa.url}/ui/upload")
    choose(browser, bad)
    summary = present(browser, "error-summary")
    assert summary.is_displayed()
    errors = browser.find_elements(By.CSS_SELECTOR, "#row-errors tbody tr")
    assert [e.find_element(By.CSS_SELECTOR, "td").text for e in errors] == ["2", "4", "6"]
    assert "XA-NOWHERE" in errors[1].text
    assert stored(xa) == (before[0] + 1, before[1] + 8)  # nothing more
    shoot(browser, "agency-upload-refused", language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_schema_reference_in_each_language(
    demo: DemoResult, browser: Any, language: str
) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, "agency", language=language)
    browser.get(f"{xa.url}/ui/schemas")
    assert browser.find_elements(By.CSS_SELECTOR, f'a[href="/ui/schemas/{SCHEMA}"]')
    shoot(browser, "schemas", language)
    browser.find_element(By.CSS_SELECTOR, f'a[href="/ui/schemas/{SCHEMA}"]').click()
    arrive(browser, f"{xa.url}/ui/schemas/{SCHEMA}")
    label = xa.opened.registry.get(SCHEMA).label.get(language)  # type: ignore[arg-type]
    assert label in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_element(By.ID, "codes-sex").is_displayed()
    shoot(browser, "schema", language)


def test_a_file_dropped_on_the_zone_is_the_one_checked(demo: DemoResult, browser: Any) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, "agency")
    browser.get(f"{xa.url}/ui/upload")
    browser.execute_script(
        """
        const transfer = new DataTransfer();
        transfer.items.add(new File([arguments[0]], "dropped.csv", {type: "text/csv"}));
        const zone = document.querySelector(".dropzone");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        """,
        good_csv(xa, "2020-W20"),
    )
    assert browser.find_element(By.CSS_SELECTOR, ".dropzone-name").text == "dropped.csv"
    assert "is-dragover" not in browser.find_element(By.CSS_SELECTOR, ".dropzone").get_attribute(
        "class"
    )
    before = stored(xa)
    browser.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()
    assert present(browser, "rows-to-store").text == "8"
    assert "dropped.csv" in browser.find_element(By.ID, "preview").text
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/upload/cancel'] button").click()
    WebDriverWait(browser, 20).until(expected_conditions.url_matches(r"/ui/upload$"))
    assert stored(xa) == before
