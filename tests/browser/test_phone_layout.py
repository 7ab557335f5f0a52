"""The wizard on a phone (390×844): no sideways scrolling, cards stacked, buttons reachable."""
import pytest

from tests.helpers import log_in_page, open_wizard, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH = 390


@pytest.fixture
def phone(playwright_browser):
    context = playwright_browser.new_context(viewport={"width": WIDTH, "height": 844}, device_scale_factor=2,
                                             is_mobile=True, has_touch=True)
    page = context.new_page()
    yield page
    context.close()


def overflow(page):
    """How far the page is wider than the screen (0: no horizontal scroll), and what sticks out."""
    return page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > width + 1)
            .map(e => e.tagName + (e.className ? '.' + e.className : '') + (e.dataset.action ? '[' + e.dataset.action + ']' : ''));
        return [document.documentElement.scrollWidth - width, wide.slice(0, 8)];
    }""")


def test_the_wizard_fits_a_phone(phone, demo_server):
    log_in_page(phone, demo_server)
    open_wizard(phone, demo_server)
    phone.click("[data-action=backup]")  # a row in the archives table, and a finished card
    phone.wait_for_selector("#backup-status [data-job-state=finished]", timeout=60_000)
    phone.locator("[data-action=add-schedule]").click()
    phone.wait_for_selector("[data-automation-message]")
    phone.reload()
    phone.wait_for_function("window.htmx !== undefined")
    excess, wide = overflow(phone)
    screenshot(phone, "phone-wizard")
    assert excess <= 0, f"the page is {excess} px wider than the phone: {wide}"
    cards = [phone.locator(f"[data-card={c}]").bounding_box() for c in ("export", "backup", "restore")]
    assert cards[0]["y"] < cards[1]["y"] < cards[2]["y"]  # stacked, one under the other
    assert all(box["x"] >= 0 and box["x"] + box["width"] <= WIDTH for box in cards)
    for action in ("export", "backup", "upload", "add-schedule", "preview-retention"):
        box = phone.locator(f"[data-action={action}]").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, action
    row = phone.locator("[data-archive]").first.bounding_box()
    assert row["x"] + row["width"] <= WIDTH
