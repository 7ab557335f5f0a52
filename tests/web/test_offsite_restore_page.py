"""Restore from off-site on the page: list a destination's copies, fetch one (with the age identity for an
encrypted copy, used for that request only) into the usual check → review → restore; copy states on each row."""
import re

from pyrage import x25519

from app.extensions import db
from app.models import AuditEvent, JobRun
from app.operations import archives, offsite
from app.operations.procedures import Caller
from tests.helpers import MAINTAINER_IP

WIZARD = "/admin/tools/backup"
OPERATOR = Caller("operator:operator@test.example", MAINTAINER_IP)


def post(client, url, data):
    return client.post(url, data={**data, "csrf_token": client.csrf}, headers={"HX-Request": "true"})


def copied(app, s3_server, **extra):
    """A destination, a backup, and its verified copy there."""
    with app.app_context():
        destination = offsite.add_destination("away", endpoint_url=s3_server.endpoint, bucket=s3_server.new_bucket(),
                                              access_key_id=s3_server.access_key,
                                              secret_access_key=s3_server.secret_key, caller=OPERATOR, **extra)
        name = archives.backup("database", created_by="tester").name
        row = offsite.copy_archive(name, destination)
        assert row.state == "verified"
        return name


def test_rows_show_each_copy_and_the_restore_card_offers_the_destination(app, admin, s3_server):
    name = copied(app, s3_server)
    page = admin.get(f"{WIZARD}/").data
    assert b'data-copy="away" data-state="verified"' in page and re.search(rb"away:\s+verified", page)
    assert b'data-form="offsite"' in page and b'<option value="away">away</option>' in page
    listing = admin.get(f"{WIZARD}/restore/offsite?destination=away", headers={"HX-Request": "true"})
    assert listing.status_code == 200 and f'data-remote="{name}"'.encode() in listing.data
    assert b'name="identity"' not in listing.data  # a plain copy needs no key


def test_a_plain_copy_is_fetched_into_the_check_and_restored(app, admin, s3_server, run_worker):
    name = copied(app, s3_server)
    with app.app_context():
        archives.delete(name)  # the server lost it: only the off-site copy is left
    started = post(admin, f"{WIZARD}/restore/offsite", {"destination": "away", "name": name})
    assert started.status_code == 200 and b'data-job-state="queued"' in started.data
    run_worker()
    with app.app_context():
        inspection = db.session.scalars(db.select(JobRun).where(JobRun.kind == "inspect")).one()
        assert inspection.state == "finished" and inspection.options["original_name"] == name
        assert inspection.options["offsite"] == "away"
    review = admin.get(f"{WIZARD}/runs/{inspection.id}", headers={"HX-Request": "true"})
    assert b"The archive checks out" in review.data and b"form" in review.data
    restore = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm",
                   {"parts": "database", "safety": "y", "store_name": app.config["STORE_NAME"], "accounts": "archive",
                    "archive_sha256": inspection.result["sha256"]})
    assert restore.status_code == 200, restore.data
    run_worker()
    with app.app_context():
        assert db.session.scalars(db.select(JobRun).where(JobRun.kind == "restore")).one().state == "finished"


def test_an_encrypted_copy_needs_its_identity_which_is_never_kept(app, admin, s3_server, run_worker):
    identity = x25519.Identity.generate()
    name = copied(app, s3_server, age_recipient=str(identity.to_public()))
    listing = admin.get(f"{WIZARD}/restore/offsite?destination=away", headers={"HX-Request": "true"})
    assert b'name="identity"' in listing.data and b"encrypted" in listing.data
    without = post(admin, f"{WIZARD}/restore/offsite", {"destination": "away", "name": name})
    assert without.status_code == 422 and b"is encrypted" in without.data
    wrong = post(admin, f"{WIZARD}/restore/offsite", {"destination": "away", "name": name,
                                                      "identity": str(x25519.Identity.generate())})
    assert wrong.status_code == 422
    right = post(admin, f"{WIZARD}/restore/offsite", {"destination": "away", "name": name, "identity": str(identity)})
    assert right.status_code == 200 and b'data-job-state="queued"' in right.data
    run_worker()
    with app.app_context():
        inspection = db.session.scalars(db.select(JobRun).where(JobRun.kind == "inspect")).one()
        assert inspection.state == "finished"
        assert str(identity) not in repr(inspection.options)
        assert not any(str(identity) in (e.detail or "") for e in db.session.scalars(db.select(AuditEvent)))


def test_an_unknown_destination_or_archive_is_refused(app, admin, s3_server):
    copied(app, s3_server)
    assert admin.get(f"{WIZARD}/restore/offsite?destination=nowhere").status_code == 404
    missing = post(admin, f"{WIZARD}/restore/offsite", {"destination": "away",
                                                        "name": "test-store-backup-both-20200101T000000000000Z-abcdef.zip"})
    assert missing.status_code == 422
    hostile = post(admin, f"{WIZARD}/restore/offsite", {"destination": "away", "name": "../../etc/passwd"})
    assert hostile.status_code == 422
