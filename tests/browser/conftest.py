"""Browser tests: a real demo server in a subprocess, driven through Debian's Chromium by Playwright."""
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.helpers import DEMO, ROOT, demo_env, flask, free_port, required

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The flags this machine's Chromium needs: no sandbox as root, no network beyond localhost.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR")


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


class DemoServer:
    def __init__(self, tmp_path, maintainer_networks=None):
        self.env = demo_env(tmp_path)
        self.instance = tmp_path / "instance"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        assert flask(["db", "upgrade"], self.env).returncode == 0
        assert flask(["seed-demo"], self.env).returncode == 0
        if maintainer_networks is not None:
            for cidr in ("127.0.0.1/32", "::1/128"):
                assert flask(["maintainers", "remove", cidr], self.env).returncode == 0
            for cidr in maintainer_networks:
                assert flask(["maintainers", "add", cidr, "--label", "test"], self.env).returncode == 0
        self.process = subprocess.Popen(DEMO + ["--port", str(self.port)], cwd=ROOT, env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/login", timeout=2).close()
                break
            except OSError:
                assert self.process.poll() is None, self.process.stdout.read()
                assert time.monotonic() < deadline, "demo server did not start"
                time.sleep(0.2)

    def flask(self, args):
        return flask(args, self.env)

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output


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


def login(page, server, email="super@demo.test", password="demo1234"):
    page.goto(f"{server.url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")


def open_wizard(page, server):
    page.goto(f"{server.url}/admin/tools/backup/")
    page.wait_for_function("window.htmx !== undefined")


def screenshot(page, name):
    """Screenshots for people to look at, written only when SCREENSHOTS_DIR is set."""
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)
