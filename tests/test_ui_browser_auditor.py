"""The auditor in a real browser on the demo federation: filter the log, download an export
that the offline verifier accepts, open an entry whose proof checks out, in every language."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from typer.testing import CliRunner

from exchange.cli import app as cli
from exchange.demo.walkthrough import DemoResult
from nodes.identity import load_current
from schemas.labels import LANGUAGES
from tests.browser_support import arrive, screenshot_folder, shoot, sign_in_as

pytestmark = pytest.mark.slow


def downloads() -> Path:
    """Where the browser fixture tells Chromium to save files."""
    return screenshot_folder().parent / "downloads"


def wait_for_new_export(before: set[Path], timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {
            p for p in downloads().glob("audit-*.jsonl") if p not in before and p.stat().st_size
        }
        partial = list(downloads().glob("*.crdownload"))
        if done and not partial:
            return max(done, key=lambda p: p.stat().st_mtime)
        time.sleep(0.2)
    raise AssertionError(f"no export arrived in {downloads()} within {timeout} s")


def rows(browser: Any) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")
    ]


def test_an_auditor_filters_the_log_downloads_a_verified_export_and_opens_an_entry(
    demo: DemoResult, browser: Any, tmp_path: Path
) -> None:
    xa = demo.nodes[0]
    assert xa.id == "XA"
    sign_in_as(browser, xa, "auditor")
    assert browser.current_url == f"{xa.url}/ui/audit"

    Select(browser.find_element(By.ID, "action")).select_by_value("release")
    Select(browser.find_element(By.ID, "outcome")).select_by_value("denied")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    WebDriverWait(browser, 20).until(lambda b: "action=release&" in b.current_url)
    found = rows(browser)
    assert len(found) >= len(demo.denials)  # XA refused XC and XB once each
    for cells in found:
        assert cells[4] == "release"
        assert cells[6] == "denied"
    reasons = " ".join(cells[7] for cells in found)
    assert "deaths" in reasons or "red line" in reasons
    shoot(browser, "audit-log-filtered", "en")

    # the export signs a checkpoint covering every entry, so the entry below is covered
    before = set(downloads().glob("audit-*.jsonl"))
    browser.find_element(By.ID, "export").click()
    exported = wait_for_new_export(before)
    assert exported.name.startswith("audit-XA-")
    key = tmp_path / "xa.pem"
    key.write_bytes(
        load_current(xa.settings.keys_dir).public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    verified = CliRunner().invoke(
        cli, ["audit", "verify", str(exported), "--public-key", str(key)], catch_exceptions=False
    )
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("OK")

    first = browser.find_element(By.CSS_SELECTOR, "#entries tbody tr td a")
    seq = first.text
    first.click()
    arrive(browser, f"{xa.url}/ui/audit/entries/{seq}")
    status = browser.find_element(By.ID, "proof-status")
    assert "Verified" in status.text
    assert "NOT" not in status.text
    assert '"action":"release"' in browser.find_element(By.ID, "canonical").text
    shoot(browser, "audit-entry", "en")

    browser.get(f"{xa.url}/ui/audit?outcome=denied")
    assert any(a.text == seq for a in browser.find_elements(By.CSS_SELECTOR, "#entries tbody a"))
    browser.get(f"{xa.url}/ui/audit")
    assert rows(browser)[0][4] == "audit.export"  # the download was recorded, newest first


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_auditor_page_in_each_language(demo: DemoResult, browser: Any, language: str) -> None:
    xa = demo.nodes[0]
    sign_in_as(browser, xa, "auditor", language=language)
    pages = {
        "audit-log": "/ui/audit",
        "audit-log-filtered": "/ui/audit?action=release&outcome=denied",
        "audit-entry": "/ui/audit/entries/0",
        "audit-checkpoints": "/ui/audit/checkpoints",
        "audit-witnesses": "/ui/audit/witnesses",
    }
    for name, path in pages.items():
        browser.get(xa.url + path)
        html = browser.find_element(By.TAG_NAME, "html")
        assert html.get_attribute("lang") == language, path
        assert html.get_attribute("dir") == ("rtl" if language == "ar" else "ltr"), path
        assert browser.find_elements(By.TAG_NAME, "h1"), path
        assert "/ui/sign-in" not in browser.current_url
        shoot(browser, name, language)
    # the table is readable without scrolling the page sideways
    browser.get(xa.url + "/ui/audit")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 1280
    assert browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")
