"""The whole store with ARCHIVE_STORE_URL pointing at a bucket of a real S3 server (SeaweedFS): backups
are kept there only, listed, downloaded through the page, restored, deleted and pruned there."""
import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.extensions import db
from app.models import AuditEvent, JobRun, Product
from app.operations import archives
from app.snapshot import container
from tests.helpers import csrf_token_from

UTC = timezone.utc


@pytest.fixture
def bucket(app, s3_server):
    """A fresh bucket as the store's archive store (prefix "shop-1")."""
    name = s3_server.new_bucket()
    app.config.update(ARCHIVE_STORE_URL=f"s3://{name}/shop-1", S3_ENDPOINT_URL=s3_server.endpoint,
                      S3_ACCESS_KEY_ID=s3_server.access_key, S3_SECRET_ACCESS_KEY=s3_server.secret_key)
    return name


@pytest.fixture
def products(app, tmp_path):
    with app.app_context():
        for n in range(3):
            db.session.add(Product(sku=f"P-{n}", name=f"Product {n}", price=Decimal("2.50") * (n + 1)))
        db.session.commit()
    (tmp_path / "uploads" / "logo.png").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "uploads" / "logo.png").write_bytes(b"\x89PNG" + bytes(2000))


def objects(s3_server, bucket):
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", ()))


def object_bytes(s3_server, bucket, name):
    return s3_server.client().get_object(Bucket=bucket, Key=f"shop-1/{name}")["Body"].read()


def local_archives(tmp_path):
    """Every archive-like file on this machine's disk under the backups folder (fetched copies too)."""
    return sorted(p.name for p in (tmp_path / "backups").rglob("*.zip"))


def backup(runner, parts="both"):
    result = runner.invoke(args=["backup", "create", "--parts", parts])
    assert result.exit_code == 0, result.output
    location = result.output.strip().splitlines()[-1]
    return location, location.rsplit("/", 1)[-1]


def test_a_backup_is_kept_in_the_bucket_only_and_listed_from_it(app, runner, bucket, s3_server, tmp_path, products):
    location, name = backup(runner)
    assert location == f"s3://{bucket}/shop-1/{name}"
    assert objects(s3_server, bucket) == [f"shop-1/{name}", f"shop-1/{name}.manifest.json"]
    assert local_archives(tmp_path) == []  # uploaded, then removed from the local disk
    data = object_bytes(s3_server, bucket, name)
    head = s3_server.client().head_object(Bucket=bucket, Key=f"shop-1/{name}")
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    listed = runner.invoke(args=["backup", "list"])
    assert listed.exit_code == 0
    assert listed.output.startswith(f"{name}\tbackup\tboth\t{len(data)}\t") and "\tcli" in listed.output
    assert "UNREADABLE" not in listed.output
    with app.app_context():
        [info] = archives.list_archives()
        assert (info.name, info.size, info.problem) == (name, len(data), None)
        assert archives.archive_sha256(name) == hashlib.sha256(data).hexdigest()
        with archives.open_archive(name) as stream:
            assert stream.read() == data
        usage = archives.folder_usage()
        assert (usage["archives"], usage["archive_bytes"]) == (1, len(data)) and usage["free"] > 0


def test_the_page_lists_and_downloads_the_same_bytes_through_the_app(app, runner, bucket, s3_server, client, as_role,
                                                                    outside_client):
    _, name = backup(runner, "database")
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    assert page.status_code == 200 and name.encode() in page.data
    response = client.get(f"/admin/tools/backup/archives/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
    assert response.headers["Content-Type"] == "application/zip"
    assert response.get_data() == object_bytes(s3_server, bucket, name)
    with app.app_context():
        event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "archive.download")).one()
        assert (event.target, event.outcome) == (name, "success")
    as_role("super_admin", outside_client)  # a backup holds the whole store: maintainer networks only
    assert outside_client.get(f"/admin/tools/backup/archives/{name}").status_code == 403


def test_restore_from_a_kept_archive_fetches_it_checks_it_and_restores(app, runner, bucket, s3_server, client, as_role,
                                                                      run_worker, tmp_path, products):
    _, name = backup(runner)
    with app.app_context():  # damage the store
        db.session.delete(db.session.scalars(db.select(Product).where(Product.sku == "P-1")).one())
        db.session.commit()
    (tmp_path / "uploads" / "logo.png").unlink()
    as_role("super_admin")
    token = csrf_token_from(client.get("/admin/tools/backup/"))
    hx = {"HX-Request": "true"}
    assert client.post("/admin/tools/backup/restore/kept", data={"name": name, "csrf_token": token},
                       headers=hx).status_code == 200
    run_worker()
    with app.app_context():
        inspection = db.session.scalars(db.select(JobRun).where(JobRun.kind == "inspect")).one()
        assert inspection.state == "finished", inspection.error
        assert inspection.result["summary"]["name"] == name
    assert local_archives(tmp_path) == []  # the fetched copy is gone with its run
    response = client.post(f"/admin/tools/backup/restore/{inspection.id}/confirm", headers=hx, data={
        "parts": "both", "store_name": "demo-store", "safety": "y", "csrf_token": token,
        "archive_sha256": inspection.result["sha256"]})
    assert response.status_code == 200, response.data
    run_worker()
    with app.app_context():
        restore = db.session.scalars(db.select(JobRun).where(JobRun.kind == "restore")).one()
        assert restore.state == "finished", restore.error
        assert db.session.scalars(db.select(Product).where(Product.sku == "P-1")).one()
        safety = restore.result["safety_backup"]
    assert (tmp_path / "uploads" / "logo.png").read_bytes() == b"\x89PNG" + bytes(2000)
    assert f"shop-1/{safety}" in objects(s3_server, bucket)  # the safety backup went to the bucket too
    assert local_archives(tmp_path) == []


def test_the_command_line_inspects_and_restores_a_kept_archive_by_name(app, runner, bucket, tmp_path, products):
    _, name = backup(runner, "database")
    inspected = runner.invoke(args=["backup", "inspect", name])
    assert inspected.exit_code == 0 and f"{name}: a valid backup of demo-store (database)" in inspected.output
    with app.app_context():
        db.session.delete(db.session.scalars(db.select(Product).where(Product.sku == "P-2")).one())
        db.session.commit()
    restored = runner.invoke(args=["backup", "restore", name, "--parts", "database", "--yes"])
    assert restored.exit_code == 0 and f"Restored database from {name}." in restored.output
    with app.app_context():
        assert db.session.scalars(db.select(Product).where(Product.sku == "P-2")).one()
    assert local_archives(tmp_path) == []
    wrong = runner.invoke(args=["backup", "restore", name, "--parts", "files", "--yes"])
    assert wrong.exit_code == 1 and f"{name} holds database; it cannot restore files" in wrong.output


def test_delete_removes_the_archive_and_its_summary_from_the_bucket(app, runner, bucket, s3_server, client, as_role):
    _, first = backup(runner, "database")
    _, second = backup(runner, "database")
    deleted = runner.invoke(args=["backup", "delete", first])
    assert deleted.exit_code == 0 and f"Deleted {first}." in deleted.output
    assert objects(s3_server, bucket) == [f"shop-1/{second}", f"shop-1/{second}.manifest.json"]
    again = runner.invoke(args=["backup", "delete", first])
    assert again.exit_code == 1 and f"There is no archive named {first} in the bucket s3://{bucket}/shop-1/" \
        in again.output
    as_role("super_admin")
    token = csrf_token_from(client.get("/admin/tools/backup/"))
    response = client.post(f"/admin/tools/backup/archives/{second}/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert objects(s3_server, bucket) == []
    assert client.get(f"/admin/tools/backup/archives/{second}").status_code == 404


def test_retention_deletes_from_the_bucket(app, runner, bucket, s3_server):
    """Two backups of the same old day (made locally, renamed, then put into the bucket): prune deletes
    the older one there, archive and summary, and audits it."""
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).replace(hour=3, minute=0, second=0, microsecond=0)
    app.config["ARCHIVE_STORE_URL"], url = None, app.config["ARCHIVE_STORE_URL"]
    made = [Path(backup(runner, "database")[0]) for _ in range(2)]
    app.config["ARCHIVE_STORE_URL"] = url
    older, newer = renamed(made[0], ten_days_ago), renamed(made[1], ten_days_ago + timedelta(hours=1))
    with app.app_context():
        for path in (older, newer):
            archives.store().put(path, app.config["BACKUP_SIGNING_KEY"])
    _, current = backup(runner, "database")  # its own retention runs after it
    assert f"shop-1/{older.name}" not in objects(s3_server, bucket)
    assert objects(s3_server, bucket) == sorted(
        f"shop-1/{n}{suffix}" for n in (newer.name, current) for suffix in ("", ".manifest.json"))
    with app.app_context():
        event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "archive.retention")).one()
        assert event.target == older.name and event.detail == "a newer backup of the same day is kept"


def renamed(path, when):
    """The same archive as if made at ``when`` (retention reads the time from the name)."""
    stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(container.NAME_PATTERN.sub(
        lambda m: f"{m['store']}-{m['kind']}-{m['parts']}-{stamp}-{m['nonce']}.zip", path.name))
    path.rename(target)
    return target


def test_a_missing_bucket_fails_the_backup_in_one_line_and_leaves_nothing(app, runner, s3_server, tmp_path):
    app.config.update(ARCHIVE_STORE_URL="s3://no-such-archive-bucket/shop-1", S3_ENDPOINT_URL=s3_server.endpoint,
                      S3_ACCESS_KEY_ID=s3_server.access_key, S3_SECRET_ACCESS_KEY=s3_server.secret_key)
    result = runner.invoke(args=["backup", "create", "--parts", "database"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: Could not list the archives: the bucket 'no-such-archive-bucket' does "
                                    f"not exist at {s3_server.endpoint}. Create it or fix the bucket name.")
    assert local_archives(tmp_path) == []
    listed = runner.invoke(args=["backup", "delete", "demo-store-backup-database-20260101T000000000000Z-abcdef.zip"])
    assert listed.exit_code == 1 and "does not exist" in listed.output


def test_the_page_says_when_the_bucket_cannot_be_read(app, client, as_role, s3_server):
    """Wrong keys for the archive store: the page answers 503 with the reason, not a 500."""
    app.config.update(ARCHIVE_STORE_URL=f"s3://{s3_server.new_bucket()}/kept", S3_ENDPOINT_URL=s3_server.endpoint,
                      S3_ACCESS_KEY_ID=s3_server.access_key, S3_SECRET_ACCESS_KEY="not-the-key")
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    assert page.status_code == 503 and b"The archive store cannot be read right now" in page.data
    assert b"Traceback" not in page.data
