"""The operator's pages in a real browser, on the demo federation, in every language."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from exchange.demo.walkthrough import DemoResult
from schemas.labels import LANGUAGES
from tests.browser_support import shoot, sign_in_as

pytestmark = pytest.mark.slow

PAGES = {
    "operator-node": "/ui/operator",
    "operator-flows": "/ui/operator/flows",
    "operator-budgets": "/ui/operator/budgets",
    "operator-peers": "/ui/operator/peers",
    "operator-policy": "/ui/operator/policy",
}


def submit(browser: Any) -> None:
    """Submit the check form (as its button does; a datalist's open suggestions can swallow
    a click), then wait for the answer page."""
    browser.find_element(By.ID, "check-form").submit()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith("/policy/check"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_operator_sees_every_page_and_checks_a_question(
    demo: DemoResult, browser: Any, language: str
) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, "operator", language=language)
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("dir") == ("rtl" if language == "ar" else "ltr")
    for name, path in PAGES.items():
        browser.get(xa.url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text, path
        shoot(browser, name, language)
    browser.get(xa.url + "/ui/operator")
    assert browser.find_element(By.ID, "key-id").text == xa.opened.key.kid
    browser.get(xa.url + "/ui/operator/budgets")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.bar rect.bar-fill")
    assert bars, "no budget bar"
    assert any(float(bar.get_attribute("width")) > 0 for bar in bars)  # the demo spent some

    browser.get(xa.url + "/ui/operator/policy")
    browser.find_element(By.ID, "check-partner").send_keys(demo.nodes[1].id)
    Select(browser.find_element(By.ID, "check-schema")).select_by_value("weekly_epi@1")
    browser.find_element(By.ID, "check-group_by").send_keys("area, week")
    browser.find_element(By.ID, "check-measures").send_keys("cases")
    browser.find_element(By.ID, "check-purpose").send_keys("outbreak_response", Keys.ESCAPE)
    submit(browser)
    assert browser.current_url.endswith("/ui/operator/policy/check")
    assert browser.find_element(By.ID, "check-verdict").text
    assert browser.find_element(By.ID, "check-rule").text
    shoot(browser, "operator-policy-check", language)

    browser.get(xa.url + "/ui/operator/policy")
    browser.find_element(By.ID, "check-partner").send_keys("not a node id", Keys.ESCAPE)
    submit(browser)
    summary = browser.find_element(By.ID, "error-summary")
    assert summary.find_element(By.CSS_SELECTOR, "a[href='#check-partner']")
    assert browser.find_element(By.ID, "check-partner").get_attribute("aria-invalid") == "true"
    shoot(browser, "operator-policy-check-error", language)
