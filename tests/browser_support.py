"""A real browser on the demo federation: Debian's Chromium, driven by Selenium.

``demo`` runs ``exchange demo`` once per test session (three nodes on loopback, pushes,
signed pulls, refusals, a cached repeat) and keeps it running while the tests browse it.
``browser`` is a fresh headless Chromium per test (no cookies carried over). ``shoot``
saves a screenshot to the run's folder, named for the page and the language, so a person
can look at every page: the folder is ``$EXCHANGE_SCREENSHOTS`` or ``screenshots/<time>``,
and the run's summary prints where it is.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from exchange.demo.cluster import DemoNode
from exchange.demo.walkthrough import DemoResult, run
from nodes.access import Role

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
_FOLDER: list[Path] = []


def screenshot_folder() -> Path:
    """This run's screenshot folder, made on first use."""
    if not _FOLDER:
        chosen = os.environ.get("EXCHANGE_SCREENSHOTS")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        folder = Path(chosen) if chosen else ROOT / "screenshots" / stamp
        folder.mkdir(parents=True, exist_ok=True)
        _FOLDER.append(folder)
    return _FOLDER[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FOLDER:
        terminalreporter.write_line(f"browser screenshots: {_FOLDER[0]}")


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    """The demo federation, running for the whole session; its nodes hold a token per role."""
    finished = threading.Event()
    ready = threading.Event()
    outcome: list[DemoResult | BaseException] = []

    def wait(result: DemoResult) -> None:
        outcome.append(result)
        ready.set()
        finished.wait()

    def serve() -> None:
        try:
            directory = tmp_path_factory.mktemp("demo") / "federation"
            console = Console(file=io.StringIO(), width=160)
            run(directory, console=console, keep_running=True, wait=wait)
        except BaseException as exc:
            outcome.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="demo-federation", daemon=True)
    thread.start()
    ready.wait(timeout=300)
    if outcome and isinstance(outcome[0], BaseException):
        raise outcome[0]
    assert ready.is_set(), "the demo did not get ready within 5 minutes"
    result = outcome[0]
    assert isinstance(result, DemoResult)
    yield result
    finished.set()
    thread.join(timeout=60)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium with a clean profile, 1280 px wide."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or shutil.which("chromedriver") is None:
        pytest.skip(
            "browser tests need Debian's chromium and chromium-driver (.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    downloads = screenshot_folder().parent / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: Any, page: str, language: str) -> Path:
    """Save what the browser shows, whole page, as ``<page>.<language>.png``."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 6000)))
    path = screenshot_folder() / f"{page}.{language}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def sign_in_as(driver: Any, node: DemoNode, role: Role, *, language: str = "en") -> None:
    """Sign ``driver`` in to ``node``'s dashboard with the demo's token for ``role``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{node.url}/ui/language/{language}?next=/ui/sign-in")
    driver.find_element(By.ID, "token").send_keys(node.tokens[role])
    driver.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()
    WebDriverWait(driver, 20).until(lambda d: "/ui/sign-in" not in d.current_url)
    assert "/ui/sign-in" not in driver.current_url, driver.page_source[:2000]


def arrive(driver: Any, url: str, *, timeout: float = 20) -> None:
    """Wait until the browser shows ``url``: a click returns before the next page loads."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.current_url == url)
