"""Archives tried in scratch stores, clicked in real Chromium against the demo server and its worker:
Verify on a kept backup marks its row "verified by restore"; "Try it first" in the review shows the dry
run's result there, before anything is confirmed, and the live store is not restored."""
import sqlite3

import pytest

from tests.helpers import log_in_page, open_wizard, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def backup_from_the_page(page):
    page.check("input[name=parts][value=database]")
    page.click("[data-action=backup]")
    page.wait_for_selector("#backup-status [data-job-state=finished]", timeout=120_000)
    page.reload()
    page.wait_for_function("window.htmx !== undefined")
    row = page.locator("[data-archive]").first
    return row, row.get_attribute("data-archive")


def test_verify_a_kept_backup(page, demo_server):
    log_in_page(page, demo_server)
    open_wizard(page, demo_server)
    row, name = backup_from_the_page(page)
    assert "verified by restore" not in row.inner_text()
    row.locator("[data-action=verify]").click()
    page.wait_for_selector("#archive-status [data-kind=trial]")
    page.wait_for_selector("#archive-status [data-job-state=finished]", timeout=120_000)
    card = page.inner_text("#archive-status")
    assert "Verify passed" in card and "Tried in a scratch store:" in card, card
    # The row was sent again with the final card: no reload needed.
    trial = page.locator(f"[data-archive='{name}'] [data-trial]")
    assert trial.get_attribute("data-trial") == "ok"
    assert trial.inner_text().startswith("verified by restore at ")
    assert page.console_errors == []


def test_try_it_first_shows_the_dry_run_in_the_review(page, demo_server):
    log_in_page(page, demo_server)
    open_wizard(page, demo_server)
    row, name = backup_from_the_page(page)
    store = sqlite3.connect(demo_server.instance / "store.db")
    store.execute("UPDATE products SET name = 'Renamed after the backup' WHERE sku = 'SKU-0003'")
    store.commit()

    row.locator("button:text('Restore…')").click()
    page.wait_for_selector("#restore-status [data-review]", timeout=60_000)
    assert page.is_checked("#restore-status input[name=try_first]")  # never tried: suggested
    page.check("#restore-status input[name=parts][value=database]")
    page.click("#restore-status [data-action=try-first]")
    page.wait_for_selector("#restore-status .dry-run [data-kind=trial]")
    page.wait_for_selector("#restore-status .dry-run [data-job-state=finished]", timeout=120_000)
    review = page.inner_text("#restore-status [data-review]")
    assert "Dry run passed" in review and "Tried in a scratch store:" in review, review
    assert "It has not been restored into the live store yet." in review
    assert page.locator("#restore-status [data-action=restore]").is_visible()  # nothing confirmed yet
    page.locator("#restore-status [data-review]").scroll_into_view_if_needed()
    screenshot(page, "restore-dry-run")

    renamed = store.execute("SELECT name FROM products WHERE sku = 'SKU-0003'").fetchone()[0]
    store.close()
    assert renamed == "Renamed after the backup"  # the live store was not restored
    assert page.console_errors == []
