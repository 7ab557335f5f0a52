"""In a real browser: the sidebar, the cards' states, and disabled cards that do nothing."""
import pytest

from tests.helpers import log_in_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_super_admin_sees_three_enabled_cards(page, demo_server):
    log_in_page(page, demo_server)
    page.click("text=Backup Data")
    page.wait_for_url(f"{demo_server.url}/admin/tools/backup/")
    for card in ("export", "backup", "restore"):
        assert page.get_attribute(f"[data-card={card}]", "aria-disabled") == "false"
    assert page.is_enabled("[data-action=backup]")
    screenshot(page, "wizard")
    assert page.console_errors == []


def test_admin_sees_no_entry_and_gets_403(page, demo_server):
    log_in_page(page, demo_server, email="admin@demo.test")
    assert page.locator("text=Backup Data").count() == 0
    response = page.goto(f"{demo_server.url}/admin/tools/backup/")
    assert response.status == 403


def test_outside_network_cards_are_disabled_and_do_nothing(page, outside_server):
    log_in_page(page, outside_server)
    page.goto(f"{outside_server.url}/admin/tools/backup/")
    assert page.get_attribute("[data-card=export]", "aria-disabled") == "false"
    for card in ("backup", "restore"):
        assert page.get_attribute(f"[data-card={card}]", "aria-disabled") == "true"
    assert "ask the platform team to add 127.0.0.1" in page.inner_text("[data-network=outside]").lower()
    screenshot(page, "wizard-outside-network")

    requests = []
    page.on("request", lambda request: request.method == "POST" and requests.append(request.url))
    page.click("[data-card=backup] [data-action=backup]", force=True, timeout=2000)
    page.click("[data-card=restore] [data-action=upload]", force=True, timeout=2000)
    page.wait_for_timeout(500)
    assert requests == []
    assert page.url == f"{outside_server.url}/admin/tools/backup/"
