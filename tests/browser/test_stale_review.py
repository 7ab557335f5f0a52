"""A review on screen belongs to the archive being restored: a new upload or a new "Restore…" removes the
old review (and its live "Restore now" form) the moment it starts, not when the new check answers."""
import pytest

from tests.helpers import log_in_page, open_wizard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REVIEWS_RIGHT_AFTER = """(selector) => {
    document.querySelector(selector).requestSubmit();
    return [document.querySelectorAll('#restore-status [data-review]').length,
            document.querySelectorAll('#restore-status form.confirm').length,
            document.querySelector('#restore-status').innerText];
}"""


def test_a_new_check_replaces_the_old_review_at_once(page, demo_server, tmp_path):
    log_in_page(page, demo_server)
    open_wizard(page, demo_server)
    page.click("[data-action=backup]")
    page.wait_for_selector("#backup-status [data-job-state=finished]", timeout=60_000)
    page.reload()
    page.wait_for_function("window.htmx !== undefined")
    page.click("[data-archive] button:text('Restore…')")
    page.wait_for_selector("#restore-status [data-review] form.confirm", timeout=60_000)

    # Another "Restore…": the old review is gone in the same instant the request starts.
    reviews, forms, text = page.evaluate(REVIEWS_RIGHT_AFTER, "[data-archive] form[hx-target='#restore-status']")
    assert (reviews, forms) == (0, 0) and "Checking the archive" in text
    page.wait_for_selector("#restore-status [data-review] form.confirm", timeout=60_000)

    # An upload: the same.
    broken = tmp_path / "not-an-archive.zip"
    broken.write_bytes(b"not a zip at all")
    page.set_input_files("#archive", str(broken))
    reviews, forms, text = page.evaluate(REVIEWS_RIGHT_AFTER, "form[enctype='multipart/form-data']")
    assert (reviews, forms) == (0, 0) and "Uploading the file" in text
    page.wait_for_selector("#restore-status [data-job-state=failed]", timeout=60_000)
    assert page.locator("#restore-status form.confirm").count() == 0
