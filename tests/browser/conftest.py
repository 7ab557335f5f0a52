"""Browser tests: a real demo server in a subprocess, driven through Debian's Chromium by Playwright."""
import os
import shutil

import pytest

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, DemoServer, required


@pytest.fixture(scope="session")
def chromium_path():
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        if required("REQUIRE_CHROMIUM"):
            pytest.fail(f"Chromium is required (REQUIRE_CHROMIUM=1) but {CHROMIUM} does not exist")
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium package)")
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright_browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def demo_server(tmp_path):
    server = DemoServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def outside_server(tmp_path):
    """A demo whose maintainer list does not contain the browser's address (127.0.0.1)."""
    server = DemoServer(tmp_path, maintainer_networks=["203.0.113.0/24"])
    yield server
    server.stop()


@pytest.fixture
def page(playwright_browser, tmp_path):
    context = playwright_browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.console_errors = errors
    yield page
    context.close()


