"""Faults of off-site copies with real servers: the S3 server killed in the middle of an upload, and a
fetch into a folder that cannot hold the copy."""
import os
from datetime import timedelta
from pathlib import Path

import pytest

from app.extensions import db
from app.models import ArchiveCopy
from app.operations import Caller, archives, offsite
from tests.helpers import MAINTAINER_IP
from tests.seaweed import SeaweedServer

OPERATOR = Caller("operator:operator@test.example", MAINTAINER_IP)
MIB = 1024 * 1024


@pytest.fixture
def own_server(tmp_path):
    """An S3 server of this test's own, to kill."""
    server = SeaweedServer(tmp_path / "weed").start()
    yield server
    server.remove()


@pytest.mark.slow
def test_the_s3_server_killed_mid_upload_fails_the_copy_which_is_retried_after_its_wait(app, own_server):
    with app.app_context():
        bucket = own_server.new_bucket()
        offsite.add_destination("own", endpoint_url=own_server.endpoint, bucket=bucket, caller=OPERATOR,
                                access_key_id=own_server.access_key, secret_access_key=own_server.secret_key)
        media = Path(app.config["UPLOADS_DIR"]) / "media"
        media.mkdir(parents=True)
        (media / "big.bin").write_bytes(os.urandom(40 * MIB))  # three parts of 16 MiB
        name = archives.backup("files", created_by="tester").name
        seen = []

        def kill_after_the_first_part(event):
            seen.append((event.phase, event.done))
            if event.phase == "copy" and event.done > 0 and own_server.process.poll() is None:
                own_server.stop()

        row = offsite.copy_archive(name, "own", progress=kill_after_the_first_part)
        assert seen[0] == ("copy", 16 * MIB)
        assert row.state == "failed" and "cannot be reached" in row.error, row.error
        assert row.verified_at is None and row.sha256 is None and row.next_attempt_at is not None
        assert archives.archive_path(name).is_file()
        assert offsite.copies_of([name])[name][0]["state"] == "failed"

        own_server.start()  # back, with the same data and ports
        assert [item["name"] for item in offsite.list_remote("own")] == []  # nothing half-listed
        assert offsite.due_copies(row.next_attempt_at - timedelta(seconds=1)) == []
        [again] = offsite.retry_due(row.next_attempt_at)
        assert again.state == "verified" and again.attempts == 0
        assert again.sha256 == archives.archive_sha256(name)
        assert [(item["name"], item["state"]) for item in offsite.list_remote("own")] == [(name, "verified")]
        assert db.session.scalars(db.select(ArchiveCopy)).one().state == "verified"


@pytest.mark.slow
def test_a_disk_that_fills_up_during_a_fetch_keeps_nothing_of_it(app, s3_server, small_filesystem):
    with app.app_context():
        offsite.add_destination("main", endpoint_url=s3_server.endpoint, bucket=s3_server.new_bucket(),
                                caller=OPERATOR, access_key_id=s3_server.access_key,
                                secret_access_key=s3_server.secret_key)
        media = Path(app.config["UPLOADS_DIR"]) / "media"
        media.mkdir(parents=True)
        (media / "clip.bin").write_bytes(os.urandom(2 * MIB))  # fits the 3 MB disk, until it fills up
        name = archives.backup("files", created_by="tester").name
        assert offsite.copy_archive(name, "main").state == "verified"
        filler = small_filesystem / "other-writer.bin"

        def another_writer_fills_the_disk(event):
            if not filler.exists():
                with open(filler, "wb") as out:
                    try:
                        while True:
                            out.write(b"\0" * 65536)
                    except OSError:
                        pass

        target = small_filesystem / name
        with pytest.raises(offsite.OffsiteError, match="The disk filled up while fetching .*the partial file was "
                                                       "removed"):
            offsite.fetch("main", name, target, progress=another_writer_fills_the_disk)
        assert sorted(p.name for p in small_filesystem.iterdir()) == [filler.name]

        filler.unlink()  # with room again, the fetch works
        assert offsite.fetch("main", name, target)["path"].read_bytes() == archives.archive_path(name).read_bytes()


@pytest.mark.slow
def test_a_fetch_for_a_restore_that_cannot_fit_is_refused_before_it_starts(app, s3_server, small_filesystem):
    with app.app_context():
        offsite.add_destination("main", endpoint_url=s3_server.endpoint, bucket=s3_server.new_bucket(),
                                caller=OPERATOR, access_key_id=s3_server.access_key,
                                secret_access_key=s3_server.secret_key)
        name = archives.backup("database", created_by="tester").name
        assert offsite.copy_archive(name, "main").state == "verified"
        app.config["BACKUPS_DIR"] = str(small_filesystem / "backups")  # uploads wait in BACKUPS_DIR/incoming
        with pytest.raises(offsite.OffsiteError, match="not enough free disk space to fetch"):
            offsite.fetch_for_restore("main", name)
        assert list((small_filesystem / "backups" / "incoming").iterdir()) == []
