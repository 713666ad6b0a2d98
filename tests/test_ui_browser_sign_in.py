"""Signing in and out in a real browser, as every role, in every language."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from exchange.demo.walkthrough import DemoResult
from exchange.ui import navigation
from schemas.labels import LANGUAGES
from tests.browser_support import arrive, shoot, sign_in_as

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_sign_in_page_speaks_each_language(
    demo: DemoResult, browser: Any, language: str
) -> None:
    xa = demo.nodes[0]
    browser.get(f"{xa.url}/ui/language/{language}?next=/ui/sign-in")
    html = browser.find_element(By.TAG_NAME, "html")
    assert html.get_attribute("lang") == language
    assert html.get_attribute("dir") == ("rtl" if language == "ar" else "ltr")
    assert browser.execute_script("return document.dir") == html.get_attribute("dir")
    # mirrored, not only translated: the node's name starts on the reading side
    brand = browser.find_element(By.CSS_SELECTOR, ".brand").rect
    button = browser.find_element(By.CSS_SELECTOR, "form.form button").rect
    middle = browser.execute_script("return document.documentElement.clientWidth") / 2
    if language == "ar":
        assert brand["x"] > middle
        assert button["x"] > middle
    else:
        assert brand["x"] + brand["width"] < middle
        assert button["x"] + button["width"] < middle
    shoot(browser, "sign-in", language)


@pytest.mark.parametrize("role", ["agency", "analyst", "auditor", "operator"])
def test_each_role_signs_in_to_its_own_start_page_and_out(
    demo: DemoResult, browser: Any, role: str
) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, role)
    assert browser.current_url == xa.url + navigation.home(role)  # type: ignore[arg-type]
    menu = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".menu a")]
    assert menu == [xa.url + href for href, _label in navigation.MENU[role]]  # type: ignore[index]
    browser.find_element(By.CSS_SELECTOR, ".sign-out button").click()
    notice = WebDriverWait(browser, 20).until(  # a click returns before the next page loads
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".notice-success"))
    )
    assert "/ui/sign-in" in browser.current_url
    assert "signed out" in notice.text
    browser.get(xa.url + navigation.home(role))  # type: ignore[arg-type]
    assert "/ui/sign-in?next=" in browser.current_url


def test_a_wrong_token_is_refused_with_a_clear_message(demo: DemoResult, browser: Any) -> None:
    xa = demo.nodes[0]
    browser.get(f"{xa.url}/ui/language/en?next=/ui/sign-in")
    browser.find_element(By.ID, "token").send_keys("xt_not-a-token-of-this-node")
    browser.find_element(By.CSS_SELECTOR, "form.form button").click()
    error = WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, "sign-in-error"))
    )
    assert "not known to this node" in error.text
    assert browser.find_element(By.ID, "token").get_attribute("aria-invalid") == "true"
    shoot(browser, "sign-in-refused", "en")


def test_the_keyboard_alone_signs_in_in_a_sensible_order(demo: DemoResult, browser: Any) -> None:
    """WCAG 2.1.1 and 2.4.3: Tab reaches the skip link first, then the page in reading order;
    the form works with the keyboard alone, and the focused element is visibly outlined."""
    xa = demo.nodes[0]
    browser.get(f"{xa.url}/ui/language/en?next=/ui/sign-in")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    skip = browser.switch_to.active_element
    assert skip.get_attribute("class") == "skip"
    assert skip.value_of_css_property("outline-style") == "solid"  # a visible focus ring
    order: list[str] = []
    for _ in range(12):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        order.append(focused.get_attribute("id") or focused.tag_name)
        if focused.get_attribute("id") == "token":
            break
    assert order[-1] == "token", order  # after the masthead's links, before anything else
    focused = browser.switch_to.active_element
    focused.send_keys(xa.tokens["auditor"])
    focused.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.tag_name == "button"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    arrive(browser, xa.url + navigation.home("auditor"))
