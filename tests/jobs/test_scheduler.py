"""The scheduler as processes: `flask backup scheduler --once --at T` started several times at once makes one
run per slot (SQLite and PostgreSQL platform databases), the production scheduler process and a real `rq
worker` make the backup, the loop survives a failing tick, and `make demo` runs the scheduler itself."""
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from redis import Redis

from app import create_app
from app.extensions import db
from app.models import BackupSchedule, JobRun
from app.operations import archives, schedules
from app.queue import get_queue
from jobs.scheduler import run_scheduler
from tests.helpers import (
    FLASK, ROOT, SUPER_ADMIN, DemoServer, app_overrides, dispose, kill_tree, rq_worker, wait_for,
)

pytestmark = pytest.mark.slow
UTC = timezone.utc


def scheduler_app(tmp_path, redis_url, platform_url=None):
    """An app and the environment of its processes: one platform database (SQLite, or PostgreSQL when
    given), one store, one Redis."""
    Redis.from_url(redis_url).flushdb()
    instance = tmp_path / "instance"
    extra = {"SQLALCHEMY_BINDS": {"platform": platform_url}} if platform_url else {}
    app = create_app("testing", app_overrides(instance, redis_url, **extra))
    app.env = {**os.environ, "FLASK_APP": "wsgi:app", "INSTANCE_DIR": str(instance), "REDIS_URL": redis_url,
               "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "PLATFORM_DATABASE_URL", "STORE_TIMEZONE", "SCHEDULER_INTERVAL"):
        app.env.pop(name, None)
    if platform_url:
        app.env["PLATFORM_DATABASE_URL"] = platform_url
    with app.app_context():
        db.create_all()
    return app


def add_schedule(app, created, **fields):
    with app.app_context():
        s = schedules.add_schedule("database", caller=SUPER_ADMIN, **fields)
        s.created_at = created.replace(tzinfo=None)
        db.session.commit()
        return s.id


def runs_of(app, schedule_id):
    with app.app_context():
        found = db.session.scalars(db.select(JobRun).where(JobRun.schedule_id == schedule_id)
                                   .order_by(JobRun.slot)).all()
        db.session.expunge_all()
        return found


def schedulers_at(app, moment, count):
    """``count`` scheduler processes, started together, each ticking once at ``moment``; what each did."""
    processes = [subprocess.Popen(FLASK + ["backup", "scheduler", "--once", "--at", moment], cwd=ROOT, env=app.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        report = {}  # "started: a, b; waiting: c" -> {"started": {"a", "b"}, "waiting": {"c"}}
        for part in out.strip().split("; "):
            if part != "nothing due":
                what, ids = part.split(": ")
                report[what] = set(ids.split(", "))
        reports.append(report)
    return reports


@pytest.mark.parametrize("platform", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_several_scheduler_processes_start_each_slot_once(request, tmp_path, redis_url, platform):
    platform_url = request.getfixturevalue("postgres_database") if platform == "postgresql" else None
    app = scheduler_app(tmp_path, redis_url, platform_url)
    try:
        created = datetime(2024, 5, 1, tzinfo=UTC)
        ids = [add_schedule(app, created, frequency="daily", at_time="03:30"),
               add_schedule(app, created, frequency="hourly", every_hours=1),
               add_schedule(app, created, frequency="weekly", at_time="02:00", weekdays="wed")]  # 1 May 2024: Wed
        slots = [f"sched-{ids[0]}-20240501T0330Z", f"sched-{ids[1]}-20240501T0300Z", f"sched-{ids[2]}-20240501T0200Z"]
        reports = schedulers_at(app, "2024-05-01T03:45:00Z", 4)
        for run_id in slots:  # one process started it (or found the store busy); the others found it started
            tried = [r for r in reports if run_id in r.get("started", set()) | r.get("waiting", set())]
            assert len(tried) == 1, reports
            assert not any(run_id in r.get("skipped", set()) | r.get("failed", set()) for r in reports)
        made = [run for schedule_id in ids for run in runs_of(app, schedule_id)]
        assert sorted(r.id for r in made) == sorted(slots)
        assert [r.attempts for r in made] == [1, 1, 1]
        # One job in Redis: the first run took the store's lock (no worker here); the others wait for it.
        assert sorted(r.state for r in made) == ["queued", "waiting", "waiting"] and len(get_queue(app)) == 1
        # A minute later (restarted schedulers, say) nothing new: the slots are taken, the waits not over.
        assert schedulers_at(app, "2024-05-01T03:46:00Z", 2) == [{}, {}]
        assert len([run for schedule_id in ids for run in runs_of(app, schedule_id)]) == 3
        with app.app_context():
            assert db.session.get(BackupSchedule, ids[0]).last_slot == datetime(2024, 5, 1, 3, 30)
    finally:
        dispose(app)


def test_the_scheduler_process_and_a_real_worker_make_the_backup(tmp_path, redis_url):
    """Production: `python -m jobs.scheduler` next to `rq worker`, on the real clock; SIGTERM stops it cleanly."""
    app = scheduler_app(tmp_path, redis_url)
    app.env["SCHEDULER_INTERVAL"] = "1"
    schedule_id = add_schedule(app, datetime.now(UTC) - timedelta(hours=2), frequency="hourly", every_hours=1)
    scheduler = subprocess.Popen([sys.executable, "-m", "jobs.scheduler"], cwd=ROOT, env=app.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = rq_worker(app.env)
    try:
        [run] = wait_for(lambda: [r for r in runs_of(app, schedule_id) if r.state == "finished"], timeout=60)
        scheduler.send_signal(signal.SIGTERM)
        output, _ = scheduler.communicate(timeout=30)
    finally:
        kill_tree(worker)
        if scheduler.poll() is None:
            kill_tree(scheduler)
    assert scheduler.returncode == 0, output
    assert "Scheduler tick: started: sched-" in output and "Scheduler stopped" in output
    age = datetime.now(UTC).replace(tzinfo=None) - run.slot
    assert run.slot.minute == 0 and timedelta(0) <= age < timedelta(hours=2)
    with app.app_context():
        assert archives.archive_path(run.archive_name).is_file()
    dispose(app)


def test_the_loop_survives_a_failing_tick(tmp_path, redis_url, caplog):
    app = scheduler_app(tmp_path, redis_url)
    schedule_id = add_schedule(app, datetime(2024, 5, 1, tzinfo=UTC), frequency="daily", at_time="03:30")
    app.config["STORE_TIMEZONE"] = "Not/AZone"  # every tick fails until someone fixes the setting
    stop, calls = threading.Event(), []

    def clock():
        calls.append(1)
        if len(calls) == 3:
            app.config["STORE_TIMEZONE"] = "UTC"
        if len(calls) == 4:
            stop.set()
        return datetime(2024, 5, 1, 4, 0, tzinfo=UTC)

    with caplog.at_level(logging.INFO, logger="app.operations.schedules"):
        run_scheduler(app, interval=0.01, stop_event=stop, clock=clock)
    failures = [r for r in caplog.records if r.getMessage().startswith("A scheduler tick failed")]
    assert len(failures) == 2 and "'Not/AZone' is not a time zone" in caplog.text
    assert [r.id for r in runs_of(app, schedule_id)] == [f"sched-{schedule_id}-20240501T0330Z"]
    assert f"Scheduler tick: started: sched-{schedule_id}-20240501T0330Z" in caplog.text
    dispose(app)


def test_the_demo_runs_the_scheduler_in_its_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEDULER_INTERVAL", "1")
    server = DemoServer(tmp_path)
    try:
        added = server.flask(["backup", "schedule", "add", "--parts", "database", "--every-hours", "1"])
        assert added.returncode == 0, added.stderr
        app = create_app("testing", app_overrides(server.instance, None))
        with app.app_context():  # as if it had been added two hours ago: its latest slot is due
            db.session.execute(db.update(BackupSchedule).values(
                created_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)))
            db.session.commit()
        [run] = wait_for(lambda: [r for r in runs_of(app, 1) if r.state == "finished"], timeout=60)
        assert run.started_by == "scheduler" and run.archive_name
        dispose(app)
    finally:
        output = server.stop()
    assert server.process.returncode == 0, output
