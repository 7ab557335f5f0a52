"""The procedures, called from the CLI and from jobs: same steps, same refusals, one run each."""
import os
from pathlib import Path

import pytest

from app.extensions import db
from app.models import AuditEvent, JobRun, StoreStatus
from app.queue import JOB_FUNCTIONS, get_queue
from app.snapshot import journal
from tests.helpers import csrf_token_from, start


def last_line(result):
    return result.output.strip().splitlines()[-1]


def backups(app):
    return sorted(p.name for p in Path(app.config["BACKUPS_DIR"]).glob("*.zip"))


def actions(app):
    with app.app_context():
        return [e.action for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id))]


def leave_a_half_finished_restore(app):
    """The state a restore killed between its file swap and its commit leaves: restored files in
    place, the old ones aside, a journal saying 'swapped', and no commit marker."""
    uploads = Path(app.config["UPLOADS_DIR"])
    (uploads / "keep.txt").write_text("before")
    token = "killed0123456789"
    old, staging = uploads.with_name(f".{uploads.name}.old-{token}"), uploads.with_name(f".{uploads.name}.new-{token}")
    os.rename(uploads, old)
    uploads.mkdir()
    (uploads / "keep.txt").write_text("restored, never committed")
    journal.write(uploads, token, phase="swapped", staging=str(staging), old=str(old))
    return uploads / "keep.txt"


@pytest.mark.parametrize("flags, safety_expected", [([], True), (["--no-safety-backup"], False)])
def test_cli_restore_takes_a_safety_backup_unless_told_not_to(app, runner, flags, safety_expected):
    archive = last_line(runner.invoke(args=["backup", "create", "--parts", "database"]))
    before = backups(app)
    done = runner.invoke(args=["backup", "restore", archive, "--parts", "database", "--yes", *flags])
    assert done.exit_code == 0, done.output
    made = sorted(set(backups(app)) - set(before))
    if safety_expected:
        assert len(made) == 1 and f"Safety backup of the store as it was: {made[0]}" in done.output
        listing = runner.invoke(args=["backup", "list"])
        assert "Safety backup before restoring" in listing.output
    else:
        assert made == [] and "Safety backup" not in done.output


@pytest.mark.parametrize("command", [["backup", "create", "--parts", "files"], ["restore"]])
def test_cli_recovers_a_half_finished_restore_before_it_starts(app, runner, command):
    archive = last_line(runner.invoke(args=["backup", "create", "--parts", "files"]))
    kept = leave_a_half_finished_restore(app)
    if command == ["restore"]:
        command = ["backup", "restore", archive, "--parts", "files", "--yes"]
    result = runner.invoke(args=command)
    assert result.exit_code == 0, result.output
    log = actions(app)
    assert "restore.recover" in log
    assert log.index("restore.recover") < max(i for i, a in enumerate(log) if a.endswith(".finish"))
    if command[1] == "create":  # the backup holds the store as it was before the killed restore
        assert kept.read_text() == "before"


def test_a_finished_run_is_never_run_again(app, client, as_role, run_worker):
    """Re-enqueueing the id of a finished run (write access to Redis) runs nothing and is audited."""
    as_role("super_admin")
    token = csrf_token_from(client.get("/admin/tools/backup/"))
    client.post("/admin/tools/backup/backup", data={"parts": "database", "csrf_token": token})
    run_worker()
    made = backups(app)
    with app.app_context():
        run = db.session.scalars(db.select(JobRun)).one()
        assert run.state == "finished"
        get_queue(app).enqueue(JOB_FUNCTIONS["backup"], run.id, job_id="replayed")
    run_worker()
    assert backups(app) == made
    with app.app_context():
        assert db.session.get(JobRun, run.id).state == "finished"
        replay = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "backup.replay")).one()
        assert replay.outcome == "denied" and run.id in replay.target


def test_a_run_declared_lost_keeps_no_archive(app, run_worker, monkeypatch):
    """The platform database is the truth: a worker that finishes a run already declared lost
    removes the archive it made instead of leaving it listed as a normal backup."""
    from app.operations import archives, runs

    with app.test_request_context():
        run = start("backup", parts="database")
    real_backup = archives.backup

    def backup_then_declared_lost(*args, **kwargs):
        path = real_backup(*args, **kwargs)
        runs.finish_run(db.session.get(JobRun, run.id), "lost", error="declared lost while the worker worked")
        return path

    monkeypatch.setattr(archives, "backup", backup_then_declared_lost)
    run_worker()
    with app.app_context():
        assert db.session.get(JobRun, run.id).state == "lost"
    assert backups(app) == []


def test_an_export_given_to_restore_is_refused_before_any_safety_backup_or_maintenance(app, runner):
    export = last_line(runner.invoke(args=["backup", "export"]))
    before = backups(app)
    result = runner.invoke(args=["backup", "restore", export, "--parts", "database", "--yes"])
    assert result.exit_code == 1 and "export, not a backup" in result.output
    assert backups(app) == before
    assert "restore.recover" not in actions(app)
    with app.app_context():
        assert StoreStatus.get().maintenance is False and StoreStatus.get().session_epoch == 1
