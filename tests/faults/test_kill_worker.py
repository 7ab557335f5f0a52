"""Kill a real `rq worker` (the production command) mid-restore: the run reads lost, the lock and
the storefront are released, and the next worker leaves the store entirely before or after."""
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job

from app.operations import archives
from app.operations import Caller
from app.operations.runs import reconcile, start_run
from app.extensions import db
from app.maintenance import in_maintenance
from app.models import JobRun
from app.queue import SERIALIZER
from tests.helpers import TTL, kill_tree, rq_worker, wait_for
from tests.faults.harness import damage, fill, state

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("phase", ["staging", "load"])
def test_worker_killed_mid_restore(worker_app, redis_url, phase):
    app = worker_app
    uploads = Path(app.config["UPLOADS_DIR"])
    with app.app_context():
        fill(db.engine, uploads, orders=60_000, files=60, file_size=1_000_000)
        after = state(db.engine, uploads)
        # The kill must land while rows load: an archive of rows (as from PostgreSQL). A SQLite store's own backup
        # (its database file) is copied back in a few milliseconds here; tests/faults/harness.py kills that copy
        # page by page.
        archive = archives._create("backup", "both", "test", None, database_file=phase == "staging")
        damage(db.engine, uploads)
        before = state(db.engine, uploads)
        with app.test_request_context():
            run = start_run("restore", Caller("user:super@test", "198.51.100.10"), parts="both",
                            options={"source": "kept", "name": archive.name, "safety": False})
    redis = Redis.from_url(redis_url)
    worker = rq_worker(app.worker_env)
    try:
        job = Job(run.id, connection=redis, serializer=SERIALIZER)
        # Inspection ends with its own "done"; only the restore's later phases mean the kill is late.
        later = {"staging": ("load", "swap", "commit"), "load": ("swap", "commit")}[phase]
        wait_for(lambda: job.get_meta(refresh=True).get("phase") in (phase, *later))
    finally:
        kill_tree(worker)
    assert job.get_meta(refresh=True).get("phase") == phase, "the kill came too late to prove anything"

    with app.app_context(), app.test_request_context():
        # The files are staged before the storefront goes into maintenance; loading the rows is inside it.
        assert in_maintenance() == (phase == "load")
        # Until the heartbeat runs out the run is still running; then it is lost, never done.
        run_row = wait_for(lambda: reconcile(db.session.get(JobRun, run.id)).state == "lost" and
                           db.session.get(JobRun, run.id), timeout=TTL * 10)
        assert run_row.state == "lost" and run_row.error
        wait_for(lambda: not in_maintenance(), timeout=TTL * 10)
        # The lock is free: the next backup can start.
        nxt = start_run("backup", Caller("user:super@test", "198.51.100.10"), parts="database")
        assert nxt.state == "queued"

    # The next worker recovers the half-done restore before anything else, then runs the backup.
    worker = rq_worker(app.worker_env)
    try:
        with app.app_context():
            wait_for(lambda: db.session.get(JobRun, nxt.id).state in ("finished", "failed") or
                     db.session.expire_all(), timeout=60)
            assert db.session.get(JobRun, nxt.id).state == "finished"
            now = state(db.engine, uploads)
    finally:
        kill_tree(worker)
    assert now in (before, after)
    leftovers = [p.name for p in uploads.parent.iterdir() if p.name.startswith(".uploads")]
    assert leftovers == []
