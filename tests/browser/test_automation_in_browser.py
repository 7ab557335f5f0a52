"""Automatic backups clicked in real Chromium: a schedule set on the page shows its next run, the
retention policy is previewed before it can be saved, and the health badge is at the top."""
import re

import pytest

from tests.helpers import log_in_page, open_wizard, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_set_a_schedule_and_see_its_next_run(page, demo_server):
    log_in_page(page, demo_server)
    open_wizard(page, demo_server)
    form = page.locator("[data-form=schedule]")
    form.locator("input[name=parts][value=database]").check()
    form.locator("select[name=frequency]").select_option("weekly")
    form.locator("input[name=at_time]").fill("04:15")
    form.locator("input[name=weekdays][value='0']").check()  # Monday, besides the default Sunday
    form.locator("[data-action=add-schedule]").click()
    page.wait_for_selector("[data-automation-message]:has-text('Schedule added.')")
    next_run = page.locator("[data-schedule] [data-next-run]").first.inner_text()
    assert re.match(r"Next run at (Mon|Sun) \d\d \w{3} \d{4} 04:15 UTC$", next_run), next_run
    assert "Weekly" in page.locator("[data-schedule]").first.inner_text()

    # The retention policy: a preview first, and only then a Save button.
    retention = page.locator("[data-form=retention]")
    assert retention.locator("[data-action=save-retention]").count() == 0
    retention.locator("input[name=keep_all_days]").fill("14")
    retention.locator("[data-action=preview-retention]").click()
    page.wait_for_selector("[data-retention-preview]")
    page.locator("[data-action=save-retention]").click()
    page.wait_for_selector("[data-automation-message]:has-text('Retention policy saved')")
    assert "every backup for 14 days" in page.locator("[data-retention]").inner_text()

    page.reload()
    page.wait_for_function("window.htmx !== undefined")
    assert page.locator("[data-health]").count() == 1
    assert "Next run at" in page.locator("[data-schedule] [data-next-run]").first.inner_text()
    screenshot(page, "schedules")
    assert page.console_errors == []
