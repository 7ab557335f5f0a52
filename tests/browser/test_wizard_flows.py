"""The wizard as a super-admin clicks it, in real Chromium against a real demo server and worker."""
import re
import sqlite3
import zipfile

import pytest

from tests.helpers import log_in_page, open_wizard, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def wizard(page, server):
    log_in_page(page, server)
    open_wizard(page, server)


def test_export_and_download(page, demo_server, tmp_path):
    wizard(page, demo_server)
    page.click("[data-action=export]")
    page.wait_for_selector("#export-status [data-job-state=finished]", timeout=60_000)
    screenshot(page, "export-finished")
    with page.expect_download() as download_info:
        page.click("#export-status [data-action=download]")
    download = download_info.value
    assert download.suggested_filename.startswith("demo-store-export-database-")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert "manifest.json" in archive.namelist()
        assert not any(name.startswith("files/") for name in archive.namelist())
    assert page.console_errors == []


def test_backup_damage_restore_from_the_downloaded_file(page, demo_server, tmp_path):
    wizard(page, demo_server)
    page.check("input[name=parts][value=both]")
    page.click("[data-action=backup]")
    page.wait_for_selector("#backup-status [data-job-state=started], #backup-status [data-job-state=finished]",
                           timeout=60_000)
    screenshot(page, "backup-progress")
    page.wait_for_selector("#backup-status [data-job-state=finished]", timeout=120_000)
    screenshot(page, "backup-finished")
    with page.expect_download() as download_info:
        page.click("#backup-status [data-action=download]")
    backup = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(backup)

    # Damage the store: a product and an image are gone.
    store = sqlite3.connect(demo_server.instance / "store.db")
    name = store.execute("SELECT name FROM products WHERE sku = 'SKU-0007'").fetchone()[0]
    store.execute("PRAGMA foreign_keys=ON")
    store.execute("DELETE FROM products WHERE sku = 'SKU-0007'")
    store.commit()
    store.close()
    image = demo_server.instance / "uploads" / "products" / "0012.png"
    original = image.read_bytes()
    image.unlink()
    page.goto(f"{demo_server.url}/")
    assert page.locator(f"text={name}").count() == 0
    page.console_errors.clear()  # the damaged storefront's missing image was a 404, as it should be

    open_wizard(page, demo_server)
    page.set_input_files("#archive", str(backup))
    page.click("[data-action=upload]")
    page.wait_for_selector("#restore-status [data-review]", timeout=60_000)
    review = page.inner_text("#restore-status")
    assert "The archive checks out" in review and "products" in review
    screenshot(page, "restore-review")
    page.check("#restore-status input[name=parts][value=both]")
    assert page.is_checked("#restore-status input[name=safety]")
    page.fill("#restore-status input[name=store_name]", "demo-stor")  # a typo keeps the form, says why
    page.click("#restore-status [data-action=restore]")
    page.wait_for_selector("#restore-status [data-form-error]")
    assert "Type the store's name" in page.inner_text("#restore-status [data-form-error]")
    page.console_errors.clear()  # the 422 of the refused confirmation is logged by the browser
    page.fill("#restore-status input[name=store_name]", "demo-store")
    page.click("#restore-status [data-action=restore]")
    # The restore ends every session: the page is sent to the login form when it finishes.
    page.wait_for_url(re.compile(r".*/login\?next=/admin/tools/backup/$"), timeout=120_000)
    screenshot(page, "restore-logged-out")
    assert "restored" in page.inner_text("body").lower()

    page.goto(f"{demo_server.url}/")
    assert page.locator(f"text={name}").count() == 1
    assert image.read_bytes() == original
    # The only failed request is the poll that found the session ended (401 + HX-Redirect).
    assert [e for e in page.console_errors if "status of 401" not in e] == []

    log_in_page(page, demo_server)
    open_wizard(page, demo_server)
    page.wait_for_selector("#restore-status [data-job-state=finished]")
    finished = page.inner_text("#restore-status")
    assert "Restore finished" in finished and "the store's database and the uploaded files were restored from" in finished
    assert page.locator("[data-archive] .tag:text('safety')").count() == 1
    screenshot(page, "restore-finished")
