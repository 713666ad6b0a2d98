"""Partner data in a real browser: the demo analyst opens what XA received, with its curves."""

from __future__ import annotations

import time
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from exchange.demo.walkthrough import DemoResult
from schemas.labels import LANGUAGES
from tests.browser_support import arrive, screenshot_folder, shoot, sign_in_as

pytestmark = pytest.mark.slow


def _provinces(demo: DemoResult) -> int:
    """XA's release of provinces by week (from XC): the one with several curves."""
    xa = demo.nodes[0]
    found = [
        r
        for r in demo.received
        if r.document["recipient"]["id"] == xa.id and "area:adm1" in r.release["query"]["group_by"]
    ]
    assert found, "the demo has XA pull provinces from its close partner"
    return found[0].received_id


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_analyst_reads_a_received_release_and_its_curves(
    demo: DemoResult, browser: Any, language: str
) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, "analyst", language=language)
    browser.get(f"{xa.url}/ui/received")
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("dir") == ("rtl" if language == "ar" else "ltr")
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    received_by_xa = [r for r in demo.received if r.document["recipient"]["id"] == xa.id]
    assert len(rows) >= len(received_by_xa)
    shoot(browser, "partner-data-list", language)

    wanted = _provinces(demo)
    browser.find_element(By.CSS_SELECTOR, f'main table a[href="/ui/received/{wanted}"]').click()
    arrive(browser, f"{xa.url}/ui/received/{wanted}")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert charts
    assert charts[0].is_displayed()
    assert charts[0].size["width"] > 300
    band = charts[0].find_element(By.CSS_SELECTOR, "path.band")
    line = charts[0].find_element(By.CSS_SELECTOR, "path.line")
    assert band.size["height"] > 0
    assert line.size["width"] > 0
    fill = browser.execute_script("return getComputedStyle(arguments[0]).fill", band)
    assert fill not in ("", "none", "rgb(0, 0, 0)"), "the stylesheet colours the band"
    assert browser.find_element(By.ID, "signature").find_elements(By.CSS_SELECTOR, ".badge-good")
    shoot(browser, "partner-data-release", language)
    figure = browser.find_element(By.CSS_SELECTOR, "figure.chart")
    figure.screenshot(str(screenshot_folder() / f"partner-data-chart.{language}.png"))

    browser.find_element(By.CSS_SELECTOR, "details.data summary").click()
    table = browser.find_element(By.CSS_SELECTOR, "details.data table")
    assert table.is_displayed()
    shoot(browser, "partner-data-release-table", language)


def test_the_csv_downloads(demo: DemoResult, browser: Any) -> None:
    xa = demo.nodes[0]
    wanted = _provinces(demo)
    sign_in_as(browser, xa, "analyst")
    browser.get(f"{xa.url}/ui/received/{wanted}")
    browser.find_element(By.CSS_SELECTOR, f'a[href="/ui/received/{wanted}.csv"]').click()
    target = screenshot_folder().parent / "downloads" / f"received-{wanted}.csv"
    deadline = time.monotonic() + 15
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert target.exists()
    header = target.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("area,week,cases")
