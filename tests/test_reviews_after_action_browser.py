"""The after-action review's HTML file in a real browser, opened from disk, in four languages:
Arabic right to left, the three charts drawn, a screenshot of each for a person to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchange.ui.after_action import render
from nodes.node import Node
from tests.browser_support import shoot
from tests.test_reviews_after_action import history, review


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_review_opens_from_disk_in_every_language(
    node: Node, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    history(node)
    found = review(node)
    for language in ("en", "fr", "es", "ar"):
        page = tmp_path / f"after-action.{language}.html"
        page.write_text(render(found, fmt="html", language=language), encoding="utf-8")
        browser.get(page.as_uri())
        assert browser.execute_script("return document.documentElement.lang") == language
        direction = browser.execute_script("return document.dir")
        assert direction == ("rtl" if language == "ar" else "ltr")
        charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
        assert len(charts) == 3
        for chart in charts:
            assert chart.size["width"] > 300 and chart.size["height"] > 40
        fills = browser.find_elements(By.CSS_SELECTOR, ".chart .hbar-fill")
        assert fills and all(0 < fill.size["height"] < 20 for fill in fills if fill.size["width"])
        assert browser.find_elements(By.CSS_SELECTOR, ".chart .lane-bar")
        # the inlined stylesheet applies: the masthead has the brand colour
        masthead = browser.find_element(By.CSS_SELECTOR, ".masthead")
        assert masthead.value_of_css_property("background-color") == "rgba(29, 79, 145, 1)"
        shoot(browser, "after-action", language)
