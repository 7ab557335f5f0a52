"""Fault fixtures: an app whose configuration a real `rq worker` process rebuilds from the environment."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from redis import Redis

from tests.conftest import app_overrides

TTL = 2  # heartbeat TTL: a dead worker's run reads as lost after this many seconds


def make_worker_app(tmp_path, redis_url):
    from app import create_app
    from app.extensions import db

    keys = {"SECRET_KEY": "kill-test-secret", "BACKUP_SIGNING_KEY": "kill-test-signing", "JOB_HEARTBEAT_TTL": TTL}
    app = create_app("testing", app_overrides(tmp_path / "instance", redis_url, **keys))
    app.worker_env = {**os.environ, "INSTANCE_DIR": str(tmp_path / "instance"), "REDIS_URL": redis_url,
                      **{k: str(v) for k, v in keys.items()}}
    with app.app_context():
        db.create_all()
    return app


def dispose(app):
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def worker_app(tmp_path, redis_url):
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()
    app = make_worker_app(tmp_path, redis_url)
    yield app
    dispose(app)


def rq_worker(env):
    """The production worker command, as the README gives it."""
    rq = Path(sys.executable).with_name("rq")
    return subprocess.Popen([str(rq), "worker", "--serializer", "rq.serializers.JSONSerializer",
                             "--worker-class", "jobs.worker.StoreWorker", "--job-class", "jobs.worker.JobsOnlyJob",
                             "--url", env["REDIS_URL"], "backup"],
                            cwd=Path(__file__).resolve().parents[2], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_tree(process):
    try:
        family = psutil.Process(process.pid).children(recursive=True) + [psutil.Process(process.pid)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=10)


def wait_for(condition, timeout=60, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")
