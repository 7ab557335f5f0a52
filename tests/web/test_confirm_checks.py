"""A restore that cannot surprise: the confirmation is checked against the review it belongs to — the
archive's SHA-256, no newer check since, a review young enough, and the losses computed again now."""
import io
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from werkzeug.datastructures import FileStorage

from app.extensions import db
from app.models import JobRun, Order
from app.models.store import utcnow
from tests.security.test_second_round import WIZARD, latest, post

STORE = {"parts": "database", "store_name": "demo-store", "safety": "y"}


def backup(runner):
    return Path(runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1])


def reviewed(app, admin, run_worker, name):
    post(admin, f"{WIZARD}/restore/kept", {"name": name})
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "finished", inspection.error
    return inspection


def restores(app):
    with app.app_context():
        return db.session.scalars(db.select(JobRun).where(JobRun.kind == "restore")).all()


def test_a_confirmation_for_another_review_is_refused(app, admin, runner, run_worker):
    inspection = reviewed(app, admin, run_worker, backup(runner).name)
    refused = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", {**STORE, "archive_sha256": "0" * 64})
    assert refused.status_code == 409 and b"does not belong to the archive that was reviewed" in refused.data
    missing = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", STORE)
    assert missing.status_code == 409 and restores(app) == []


def test_an_older_review_cannot_be_confirmed_once_another_archive_was_checked(app, admin, runner, run_worker):
    first = reviewed(app, admin, run_worker, backup(runner).name)
    reviewed(app, admin, run_worker, backup(runner).name)  # a new "Restore…" while the old review was open
    refused = post(admin, f"{WIZARD}/restore/{first.id}/confirm", {**STORE, "archive_sha256": first.result["sha256"]})
    assert refused.status_code == 409 and b"Another archive was checked after this review" in refused.data
    assert restores(app) == []


def test_a_review_older_than_the_limit_must_be_checked_again(app, admin, runner, run_worker):
    inspection = reviewed(app, admin, run_worker, backup(runner).name)
    with app.app_context():
        db.session.get(JobRun, inspection.id).ended_at = utcnow() - timedelta(minutes=31)
        db.session.commit()
    refused = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm",
                   {**STORE, "archive_sha256": inspection.result["sha256"]})
    assert refused.status_code == 409 and b"This review is 31 minutes old" in refused.data
    assert restores(app) == []


def test_losses_are_computed_again_at_confirmation_and_shown_before_anything_happens(app, admin, runner, run_worker):
    inspection = reviewed(app, admin, run_worker, backup(runner).name)
    assert not any("order" in line for line in inspection.result["current"]["losses"])
    with app.app_context():  # an order arrives while the review is on screen
        db.session.add(Order(number="LATE-1", customer_email="c@example.com", status="paid", total=Decimal("9.90"),
                             placed_at=utcnow() + timedelta(seconds=5)))
        db.session.commit()
    confirm = {**STORE, "archive_sha256": inspection.result["sha256"]}
    changed = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", confirm)
    assert changed.status_code == 422 and b"The store changed since the review" in changed.data
    assert b"1 order placed after this backup will be lost." in changed.data and restores(app) == []
    again = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", confirm)  # read, and confirmed again
    assert again.status_code == 200 and len(restores(app)) == 1
    # The restore's card shows the losses as computed at that moment.
    assert b"data-losses-at-confirmation" in again.data and b"1 order placed after this backup will be lost." in again.data


def test_an_archive_swapped_after_its_review_is_not_restored(app, admin, runner, run_worker):
    reviewed_archive = backup(runner)
    with app.app_context():  # the store changes, so the next backup holds other data
        db.session.add(Order(number="LATER-1", customer_email="c@example.com", status="paid", total=Decimal("1.00"),
                             placed_at=utcnow()))
        db.session.commit()
    other = backup(runner)
    inspection = reviewed(app, admin, run_worker, reviewed_archive.name)
    shutil.copyfile(other, reviewed_archive)  # the file under that name is no longer the one reviewed
    assert post(admin, f"{WIZARD}/restore/{inspection.id}/confirm",
                {**STORE, "archive_sha256": inspection.result["sha256"]}).status_code == 200
    run_worker()
    restore = latest(app, "restore")
    assert restore.state == "failed" and "not the one that was reviewed" in restore.error
    assert restore.result is None


def test_an_export_is_refused_at_the_check_not_after_the_confirmation(app, admin, runner, run_worker):
    """A dead end is refused as soon as it can be known: before any review, name typing or safety backup."""
    export = Path(runner.invoke(args=["backup", "export"]).output.strip().splitlines()[-1])
    upload = FileStorage(io.BytesIO(export.read_bytes()), filename="friday-export.zip")
    admin.post(f"{WIZARD}/restore/upload", data={"csrf_token": admin.csrf, "archive": upload},
               headers={"HX-Request": "true"}, content_type="multipart/form-data")
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "failed"
    assert inspection.error.startswith("friday-export.zip is an export, not a backup")
    card = admin.get(f"{WIZARD}/runs/{inspection.id}", headers={"HX-Request": "true"}).data
    assert b"alert-error" in card and b'name="store_name"' not in card  # no confirmation offered
    assert restores(app) == []
