"""The public transparency page in a real browser, on the demo federation (it turns it on)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from exchange.demo.walkthrough import DemoResult
from schemas.labels import LANGUAGES
from tests.browser_support import arrive, shoot

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_public_page_needs_no_sign_in_and_speaks_each_language(
    demo: DemoResult, browser: Any, language: str
) -> None:
    xa = demo.nodes[0]
    browser.get(f"{xa.url}/ui/language/{language}?next=/ui/transparency")
    assert browser.current_url == f"{xa.url}/ui/transparency"
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("lang") == language
    assert html.get_attribute("dir") == ("rtl" if language == "ar" else "ltr")
    partners = [
        cell.text.split()[-1]
        for cell in browser.find_elements(By.CSS_SELECTOR, "table tbody th[scope=row]")
    ]
    others = {node.id for node in demo.nodes[1:]}
    assert others <= set(partners), partners
    assert browser.find_elements(By.TAG_NAME, "meter"), "each budget is drawn against its cap"
    assert browser.find_element(By.ID, "epsilon").is_displayed()
    assert browser.find_element(By.ID, "escalations").is_displayed()
    assert browser.find_element(By.ID, "as-of").is_displayed(), "the checkpoint is named"
    chosen = browser.find_element(By.CSS_SELECTOR, "select#period option[selected]")
    assert chosen.get_attribute("value").startswith(str(dt.datetime.now(dt.UTC).year))
    assert not browser.find_elements(By.CSS_SELECTOR, ".menu"), "no sign-in, no menu"
    shoot(browser, "transparency", language)


def test_the_sign_in_page_links_to_it(demo: DemoResult, browser: Any) -> None:
    xa = demo.nodes[0]
    browser.get(f"{xa.url}/ui/language/en?next=/ui/sign-in")
    browser.find_element(By.CSS_SELECTOR, "a[href='/ui/transparency']").click()
    arrive(browser, f"{xa.url}/ui/transparency")
    assert browser.find_element(By.TAG_NAME, "h1").text == "What this node shares, and with whom"
