"""Cancel from the card: a queued run never starts; a running backup stops with its partial file removed
and the lock freed (a real `rq worker`); a restore cannot be cancelled once it began loading."""
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job

from app.extensions import db
from app.models import AuditEvent, JobRun
from app.operations import Caller
from app.operations.runs import RunRefused, cancel_run, reconcile, start_run, store_lock
from app.queue import SERIALIZER
from tests.faults.harness import fill
from tests.helpers import csrf_token_from, kill_tree, rq_worker, wait_for

SUPER = Caller("user:super@test", "198.51.100.10")


def ended(app, run_id):
    def check():
        db.session.expire_all()
        run = reconcile(db.session.get(JobRun, run_id))
        return run if run.state not in ("queued", "started") else None

    with app.app_context(), app.test_request_context():
        return wait_for(check, timeout=90)


def test_a_queued_backup_is_cancelled_from_its_card_and_frees_the_store(app, client, as_role, run_worker):
    as_role("super_admin")
    client.csrf = csrf_token_from(client.get("/admin/tools/backup/"))
    hx = {"HX-Request": "true"}
    client.post("/admin/tools/backup/backup", data={"parts": "both", "csrf_token": client.csrf}, headers=hx)
    with app.app_context():
        run = db.session.scalars(db.select(JobRun)).one()
    card = client.get(f"/admin/tools/backup/runs/{run.id}", headers=hx).data
    assert b'data-action="cancel"' in card
    cancelled = client.post(f"/admin/tools/backup/runs/{run.id}/cancel", data={"csrf_token": client.csrf}, headers=hx)
    assert cancelled.status_code == 286 and b"was cancelled" in cancelled.data
    run_worker()  # the job was cancelled: nothing runs
    with app.app_context():
        run = db.session.get(JobRun, run.id)
        assert run.state == "cancelled" and run.started_at is None and "before it started" in run.error
        assert db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "backup.cancel")).one()
    again = client.post("/admin/tools/backup/backup", data={"parts": "both", "csrf_token": client.csrf}, headers=hx)
    assert again.status_code == 200 and b'data-job-state="queued"' in again.data  # the lock was freed
    assert client.post(f"/admin/tools/backup/runs/{run.id}/cancel", data={"csrf_token": client.csrf},
                       headers=hx).status_code == 409  # ended: nothing to cancel


@pytest.mark.slow
def test_a_running_backup_stops_removes_its_partial_file_and_frees_the_lock(worker_app):
    app = worker_app
    backups = Path(app.config["BACKUPS_DIR"])
    with app.app_context():
        # Enough files that the run is still going when it is cancelled (a SQLite store's database part is copied
        # in a moment).
        fill(db.engine, Path(app.config["UPLOADS_DIR"]), orders=20_000, files=80, file_size=5_000_000)
        with app.test_request_context():
            run = start_run("backup", SUPER, parts="both")
    worker = rq_worker(app.worker_env)
    try:
        job = Job(run.id, connection=Redis.from_url(app.config["REDIS_URL"]), serializer=SERIALIZER)
        wait_for(lambda: job.get_meta(refresh=True).get("phase") in ("database", "files"), timeout=60, interval=0.01)
        with app.app_context(), app.test_request_context():
            cancel_run(db.session.get(JobRun, run.id), SUPER)
        final = ended(app, run.id)
        assert final.state == "cancelled" and "partial file was removed" in final.error
        assert list(backups.glob("*.zip")) == [] and list(backups.glob(".*.part")) == []
        with app.app_context(), app.test_request_context():
            assert store_lock("backup").holder() is None
    finally:
        kill_tree(worker)


def test_a_restore_past_its_point_of_no_return_cannot_be_cancelled(app):
    with app.app_context(), app.test_request_context():
        run = JobRun(id="r" * 32, kind="restore", parts="both", state="started", started_by=SUPER.actor)
        db.session.add(run)
        db.session.commit()
        with pytest.raises(RunRefused, match="cannot be cancelled any more"):
            cancel_run(run, SUPER, phase_allows=False)
        assert db.session.get(JobRun, run.id).state == "started"
