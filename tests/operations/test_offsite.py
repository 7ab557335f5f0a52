"""Off-site copies against a real S3 server (SeaweedFS): copied, read back and verified, encrypted to an
age key, locked, found corrupted, failing with a reason, protected from retention, fetched back, restored."""
import hashlib
import os
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyrage
import pytest
from botocore.exceptions import ClientError
from pyrage import x25519

from app.extensions import db
from app.models import ArchiveCopy, AuditEvent, Destination, Product
from app.operations import COMMAND_LINE, Caller, archives, incoming, offsite, retention
from app.operations.procedures import run_restore
from app.snapshot.container import NAME_PATTERN
from tests.helpers import MAINTAINER_IP, start

OPERATOR = Caller("operator:operator@test.example", MAINTAINER_IP)
MIB = 1024 * 1024
UTC = timezone.utc


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def add(server, bucket=None, name="offsite", **extra):
    fields = dict(endpoint_url=server.endpoint, bucket=bucket, prefix="shop/copies", access_key_id=server.access_key,
                  secret_access_key=server.secret_key, caller=OPERATOR)
    return offsite.add_destination(name, **{**fields, **extra})


def backup(parts="database"):
    return archives.backup(parts, created_by="tester").name


def local_bytes(name):
    return archives.archive_path(name).read_bytes()


def remote_bytes(server, destination, name):
    key = f"{destination.prefix}/{name}"
    return server.client().get_object(Bucket=destination.bucket, Key=key)["Body"].read()


def big_files(app, size=20 * MIB):
    """Incompressible uploads, so that the archive takes more than one S3 part (16 MiB)."""
    folder = Path(app.config["UPLOADS_DIR"]) / "media"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "video.bin").write_bytes(os.urandom(size))


def copy_row(name, destination):
    return db.session.scalars(db.select(ArchiveCopy).filter_by(archive_name=name, destination_id=destination.id)).one()


def test_destinations_are_added_listed_and_removed_and_never_show_their_secret(ctx, runner, s3_server):
    bucket = s3_server.new_bucket()
    added = runner.invoke(args=["backup", "destinations", "add", "main", "--endpoint", s3_server.endpoint,
                                "--bucket", bucket, "--prefix", "shop", "--access-key-id", s3_server.access_key,
                                "--secret-access-key", s3_server.secret_key])
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "Added destination main."  # the bucket answered: no warning
    listing = runner.invoke(args=["backup", "destinations", "list"])
    assert listing.exit_code == 0 and listing.output.startswith(f"main\ton\ts3://{bucket}/shop at {s3_server.endpoint}")
    assert "stored in the platform database" in listing.output
    described = offsite.list_destinations()
    audit_details = " ".join(e.detail for e in db.session.scalars(db.select(AuditEvent)))
    for shown in (listing.output, repr(described), audit_details, repr(db.session.get(Destination, 1))):
        assert s3_server.secret_key not in shown and s3_server.access_key not in shown
    assert db.session.get(Destination, 1).secret_access_key == s3_server.secret_key  # kept, only never shown

    removed = runner.invoke(args=["backup", "destinations", "remove", "main"])
    assert removed.exit_code == 0 and offsite.list_destinations() == []
    missing = runner.invoke(args=["backup", "destinations", "remove", "main"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: There is no off-site destination called 'main'")


@pytest.mark.parametrize("fields, message", [
    ({"age_recipient": "age1notakey"}, "is not an age public key"),
    ({"credentials_env": "OFFSITE_MAIN"}, "either from the environment or as keys, not both"),
    ({"access_key_id": None, "secret_access_key": None}, "Give the destination's credentials"),
    ({"bucket": "Not_A_Bucket"}, "is not an S3 bucket name"),
    ({"endpoint_url": "ftp://example.com"}, "is an http(s) address"),
    ({"endpoint_url": "https://key:secret@example.com"}, "with no credentials in it"),
    ({"object_lock_days": -1}, "from 0 (off)"),
    ({"name": "Main Copy"}, "lowercase letters"),
])
def test_a_destination_with_a_bad_field_is_refused_with_the_reason(ctx, s3_server, fields, message):
    fields = {"bucket": "some-bucket", **fields}
    with pytest.raises(offsite.DestinationError, match=re.escape(message)):
        add(s3_server, **fields)
    assert db.session.scalars(db.select(Destination)).all() == []


def test_the_cli_refuses_a_destination_in_one_line(ctx, runner):
    result = runner.invoke(args=["backup", "destinations", "add", "main", "--endpoint", "http://127.0.0.1:1",
                                 "--bucket", "some-bucket", "--credentials-env", "OFFSITE_MAIN",
                                 "--age-recipient", "age1nope"])
    assert result.exit_code == 1
    assert result.output == "Error: 'age1nope' is not an age public key (it starts with age1).\n"


def test_a_copy_is_uploaded_read_back_and_verified(ctx, s3_server):
    destination = add(s3_server, s3_server.new_bucket())
    name = backup()
    row = offsite.copy_archive(name, "offsite", caller=COMMAND_LINE)
    assert (row.state, row.error, row.attempts, row.next_attempt_at) == ("verified", None, 0, None)
    assert row.verified_at is not None and row.size == row.bytes_done == len(local_bytes(name))
    assert row.sha256 == row.archive_sha256 == hashlib.sha256(local_bytes(name)).hexdigest()
    assert remote_bytes(s3_server, destination, name) == local_bytes(name)
    [copy] = offsite.copies_of([name])[name]
    assert (copy["destination"], copy["state"], copy["encrypted"], copy["locked_until"]) == ("offsite", "verified",
                                                                                              False, None)
    event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "archive.copy")).one()
    assert (event.target, event.outcome, event.actor) == (name, "success", "cli")
    assert event.detail.startswith("to offsite: verified")
    assert [r["state"] for r in offsite.verify(name)] == ["verified"]


def test_a_multipart_archive_is_copied_whole_and_verified(ctx, s3_server):
    destination = add(s3_server, s3_server.new_bucket())
    big_files(ctx)
    name = backup("files")
    assert archives.archive_size(name) > 16 * MIB
    [row] = offsite.copy_to_all(name)
    assert row.state == "verified", row.error
    head = s3_server.client().head_object(Bucket=destination.bucket, Key=f"shop/copies/{name}")
    assert head["ETag"].strip('"').endswith("-2")  # two parts
    assert hashlib.sha256(remote_bytes(s3_server, destination, name)).hexdigest() == row.sha256
    assert row.sha256 == archives.archive_sha256(name)


def test_an_encrypted_copy_is_unreadable_without_the_identity_and_fetched_back_exactly(ctx, s3_server, tmp_path):
    identity = x25519.Identity.generate()
    destination = add(s3_server, s3_server.new_bucket(), age_recipient=str(identity.to_public()))
    name = backup()
    row = offsite.copy_archive(name, destination)
    assert row.state == "verified" and row.encrypted and row.object_name == name + ".age"
    stored = remote_bytes(s3_server, destination, name + ".age")
    assert not stored.startswith(b"PK") and stored.startswith(b"age-encryption.org/v1\n")
    assert b"manifest.json" not in stored
    assert row.sha256 == hashlib.sha256(stored).hexdigest() != row.archive_sha256
    assert row.archive_sha256 == hashlib.sha256(local_bytes(name)).hexdigest()
    assert pyrage.decrypt(stored, [identity]) == local_bytes(name)
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(stored, [x25519.Identity.generate()])

    with pytest.raises(offsite.OffsiteError, match="is encrypted: give the age identity"):
        offsite.fetch("offsite", name, tmp_path / "no-identity.zip")
    with pytest.raises(offsite.OffsiteError, match="encrypted to another age public key"):
        offsite.fetch("offsite", name, tmp_path / "wrong.zip", identity=str(x25519.Identity.generate()))
    with pytest.raises(offsite.OffsiteError, match="not an age identity"):
        offsite.fetch("offsite", name, tmp_path / "garbage.zip", identity="AGE-SECRET-KEY-1NOPE")
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == []  # nothing left behind
    key_file = f"# created: 2026-01-01\n# public key: {identity.to_public()}\n{identity}\n"
    fetched = offsite.fetch("offsite", name, tmp_path / "back.zip", identity=key_file)
    assert fetched["path"].read_bytes() == local_bytes(name) and fetched["checked_against"] == "our record"
    assert str(identity) not in " ".join(e.detail for e in db.session.scalars(db.select(AuditEvent)))


def test_the_cli_fetches_an_encrypted_copy_with_an_identity_file(ctx, runner, s3_server, tmp_path):
    identity = x25519.Identity.generate()
    add(s3_server, s3_server.new_bucket(), age_recipient=str(identity.to_public()))
    name = backup()
    assert runner.invoke(args=["backup", "copy", name, "--to", "offsite"]).exit_code == 0
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{identity}\n")
    out = tmp_path / "out"
    out.mkdir()
    refused = runner.invoke(args=["backup", "fetch", "offsite", name, "--output", str(out)])
    assert refused.exit_code == 1 and refused.output.startswith("Error: The copy of") and "is encrypted" in refused.output
    result = runner.invoke(args=["backup", "fetch", "offsite", name, "--identity-file", str(key_file),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out / name) and (out / name).read_bytes() == local_bytes(name)
    again = runner.invoke(args=["backup", "fetch", "offsite", name, "--identity-file", "-", "--output", str(out)],
                          input=str(identity))
    assert again.exit_code == 1 and "exists already; nothing was overwritten" in again.output


def test_a_locked_copy_cannot_be_deleted_before_its_time(ctx, s3_server):
    destination = add(s3_server, s3_server.new_bucket(object_lock=True), object_lock_days=2)
    assert offsite.check_destination(destination) is None
    name = backup()
    row = offsite.copy_archive(name, destination)
    assert row.state == "verified", row.error
    assert row.locked_until - datetime.now(UTC).replace(tzinfo=None) > timedelta(days=1, hours=23)
    client, key = s3_server.client(), f"shop/copies/{name}"
    head = client.head_object(Bucket=destination.bucket, Key=key)
    retention_ = client.get_object_retention(Bucket=destination.bucket, Key=key, VersionId=head["VersionId"])
    assert retention_["Retention"]["Mode"] == "COMPLIANCE"
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=destination.bucket, Key=key, VersionId=head["VersionId"])
    assert remote_bytes(s3_server, destination, name) == local_bytes(name)
    assert offsite.copies_of([name])[name][0]["locked_until"] == row.locked_until


def test_object_lock_on_a_bucket_without_it_fails_the_copy_with_the_reason(ctx, s3_server):
    destination = add(s3_server, s3_server.new_bucket(), object_lock_days=1)
    assert "object lock is not enabled" in offsite.check_destination(destination)
    name = backup()
    row = offsite.copy_archive(name, destination)
    assert row.state == "failed" and "is object lock enabled on the bucket" in row.error


def test_verify_finds_a_copy_corrupted_in_the_bucket_and_it_is_copied_again(ctx, runner, s3_server):
    destination = add(s3_server, s3_server.new_bucket())
    name = backup()
    offsite.copy_archive(name, destination)
    s3_server.client().put_object(Bucket=destination.bucket, Key=f"shop/copies/{name}", Body=b"PK not the archive")
    result = runner.invoke(args=["backup", "verify"])
    message = "the copy in offsite does not match the archive (checksum differs)"
    assert result.exit_code == 1 and f"{name} -> offsite: {message}" in result.output
    row = copy_row(name, destination)
    assert (row.state, row.error) == ("failed", message) and row.next_attempt_at is not None
    assert offsite.copies_of([name])[name][0]["error"] == message
    assert archives.archive_path(name).is_file()  # the local archive is untouched
    assert offsite.retry_due(datetime.now(UTC)) == []  # not yet: after the first retry's wait
    [again] = offsite.retry_due(row.next_attempt_at + timedelta(seconds=1))
    assert again.state == "verified" and remote_bytes(s3_server, destination, name) == local_bytes(name)
    assert runner.invoke(args=["backup", "verify", name]).exit_code == 0


def test_a_copy_gone_from_the_bucket_is_found_missing(ctx, s3_server):
    destination = add(s3_server, s3_server.new_bucket())
    name = backup()
    offsite.copy_archive(name, destination)
    s3_server.client().delete_object(Bucket=destination.bucket, Key=f"shop/copies/{name}")
    [result] = offsite.verify()
    assert result == {"archive": name, "destination": "offsite", "state": "failed",
                      "message": "the copy in offsite is missing"}


def test_wrong_credentials_and_a_missing_bucket_fail_with_a_reason_and_keep_the_archive(ctx, s3_server):
    add(s3_server, s3_server.new_bucket(), name="wrong-keys", secret_access_key="not-the-secret")
    add(s3_server, "no-such-bucket-here", name="no-bucket")
    name = backup()
    before = datetime.now(UTC).replace(tzinfo=None)
    copies = offsite.copy_to_all(name)
    reasons = {db.session.get(Destination, c.destination_id).name: c.error for c in copies}
    assert [c.state for c in copies] == ["failed", "failed"]
    assert "the bucket 'no-such-bucket-here' does not exist" in reasons["no-bucket"]
    assert "refused the access key or secret key" in reasons["wrong-keys"]
    assert "not-the-secret" not in " ".join(reasons.values())
    for copy in copies:
        wait = (copy.next_attempt_at - before).total_seconds()
        assert ctx.config["OFFSITE_RETRY_SECONDS"] <= wait < ctx.config["OFFSITE_RETRY_SECONDS"] + 60
    assert name in [a.name for a in archives.list_archives()] and archives.archive_path(name).is_file()
    failures = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "archive.copy")).all()
    assert {e.outcome for e in failures} == {"failure"} and len(failures) == 2


def test_an_encrypted_copy_that_cannot_be_uploaded_fails_and_stops_its_encryption(ctx, runner, s3_server):
    identity = x25519.Identity.generate()
    add(s3_server, "no-such-bucket-here", age_recipient=str(identity.to_public()))
    big_files(ctx, 4 * MIB)  # more than the pipe holds: the encryption blocks until it is stopped
    name = backup("both")
    ctx.config["OFFSITE_RETRY_SECONDS"] = 0  # due again at once
    row = offsite.copy_archive(name, "offsite")
    assert row.state == "failed" and "does not exist" in row.error
    assert [t for t in threading.enumerate() if t.name == "age-encrypt"] == []
    retried = runner.invoke(args=["backup", "retry-copies"])
    assert retried.exit_code == 1 and f"{name} -> offsite: failed: Could not" in retried.output


def test_credentials_can_come_from_the_environment(ctx, s3_server, monkeypatch):
    add(s3_server, s3_server.new_bucket(), access_key_id=None, secret_access_key=None, credentials_env="OFFSITE_TEST")
    name = backup()
    row = offsite.copy_archive(name, "offsite")
    assert row.state == "failed"
    assert "OFFSITE_TEST_ACCESS_KEY_ID and OFFSITE_TEST_SECRET_ACCESS_KEY are not both set" in row.error
    monkeypatch.setenv("OFFSITE_TEST_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("OFFSITE_TEST_SECRET_ACCESS_KEY", s3_server.secret_key)
    assert offsite.copy_archive(name, "offsite").state == "verified"
    [shown] = offsite.list_destinations()
    assert shown["credentials"] == "from the environment (OFFSITE_TEST_ACCESS_KEY_ID, OFFSITE_TEST_SECRET_ACCESS_KEY)"
    assert db.session.get(Destination, shown["id"]).secret_access_key is None


def test_failed_copies_are_retried_with_a_doubling_wait_then_given_up(ctx, s3_server):
    ctx.config.update(OFFSITE_RETRY_SECONDS=60, OFFSITE_RETRIES=2)
    destination = add(s3_server, "no-such-bucket-here")
    name = backup()
    row = offsite.copy_archive(name, destination)
    waits = []
    for _ in range(2):
        waits.append(round((row.next_attempt_at - row.updated_at).total_seconds()))
        assert offsite.due_copies(row.next_attempt_at - timedelta(seconds=1)) == []
        assert offsite.due_copies(row.next_attempt_at) == [(name, "offsite")]
        [row] = offsite.retry_due(row.next_attempt_at)
    assert waits == [60, 120]
    assert row.attempts == 3 and row.next_attempt_at is None and "no more automatic retries" in row.error
    assert offsite.due_copies(datetime.now(UTC) + timedelta(days=365)) == []


def test_retention_never_deletes_an_archive_whose_copy_is_not_verified(ctx, runner, s3_server):
    made = [Path(str(archives.backup("database", created_by="tester"))) for _ in range(3)]
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).replace(hour=3, minute=0, second=0, microsecond=0)
    older = rename(made[0], ten_days_ago)  # in the daily period: a newer backup of its day is kept
    rename(made[1], ten_days_ago + timedelta(hours=1))
    assert older.name in dict(retention.store_plan())

    failing = add(s3_server, "no-such-bucket-here", name="failing")
    assert offsite.copy_archive(older.name, failing).state == "failed"
    assert older.name not in dict(retention.store_plan())
    assert offsite.unverified() == {older.name: "its off-site copy is not verified yet"}
    pruned = runner.invoke(args=["backup", "prune"])
    assert pruned.exit_code == 0 and older.exists()

    offsite.set_enabled("failing", False, OPERATOR)  # a disabled destination holds nothing back
    assert older.name in dict(retention.store_plan())
    offsite.set_enabled("failing", True, OPERATOR)
    offsite.remove_destination("failing", OPERATOR)
    working = add(s3_server, s3_server.new_bucket(), name="working")
    assert offsite.copy_archive(older.name, working).state == "verified"
    assert older.name in dict(retention.store_plan())  # verified: the policy alone decides


def rename(path, when):
    """The same archive as if made at ``when`` (retention reads the time from the name)."""
    stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(NAME_PATTERN.sub(
        lambda m: f"{m['store']}-{m['kind']}-{m['parts']}-{stamp}-{m['nonce']}.zip", path.name))
    path.rename(target)
    return target


def test_list_remote_shows_the_archives_in_a_destination_newest_first(ctx, s3_server):
    destination = add(s3_server, s3_server.new_bucket())
    names = [backup(), backup()]
    for name in names:
        offsite.copy_archive(name, destination)
    s3_server.client().put_object(Bucket=destination.bucket, Key="shop/copies/notes.txt", Body=b"not ours")
    listed = offsite.list_remote("offsite")
    assert [item["name"] for item in listed] == sorted(names, reverse=True)
    assert {(item["state"], item["encrypted"]) for item in listed} == {("verified", False)}


def test_a_copy_fetched_from_off_site_goes_through_inspect_and_restores_the_store(ctx, s3_server, run_worker):
    """The store owner's path after losing the server: the local archive is gone, the copy is fetched
    (decrypted with the identity, checked), inspected by a run like an upload, and restored."""
    identity = x25519.Identity.generate()
    add(s3_server, s3_server.new_bucket(), age_recipient=str(identity.to_public()))
    db.session.add(Product(sku="KEEP-1", name="Kept product", price=5, stock=1))
    db.session.commit()
    name = backup()
    assert offsite.copy_archive(name, "offsite").state == "verified"
    archives.delete(name)
    db.session.execute(db.delete(Product))
    db.session.commit()

    with ctx.test_request_context():
        options = offsite.fetch_for_restore("offsite", name, identity=str(identity), caller=OPERATOR)
        assert options["source"] == "upload" and options["original_name"] == name
        assert incoming.source_path(options).parent == incoming.incoming_dir()
        run = start("inspect", options=options)
    run_worker()
    db.session.expire_all()
    inspection = db.session.get(type(run), run.id)
    assert inspection.state == "finished", inspection.error
    summary = inspection.result["summary"]
    assert (summary["kind"], summary["parts"], summary["row_counts"]["products"]) == ("backup", "database", 1)

    result = run_restore(incoming.source_path(options), "database", COMMAND_LINE, safety=False)
    assert result["restored"] == "database"
    assert [p.sku for p in db.session.scalars(db.select(Product))] == ["KEEP-1"]
