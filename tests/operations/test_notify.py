"""Notifications: a real SMTP server (aiosmtpd) and a real webhook receiver hear about runs that ended
badly, once per run; a notification that cannot be sent changes nothing and is audited."""
import email
import hashlib
import hmac
import json
import logging
import threading
import uuid
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.extensions import db
from app.models import AuditEvent, BackupSchedule, JobRun, User
from app.operations.notify import notify_run
from app.operations import Caller
from app.operations.runs import start_run
from tests.helpers import FAST_HASH, free_port, start
from tests.operations.test_trials import ORPHAN_LINE, broken, seed


class Inbox:
    """An aiosmtpd handler keeping every message it accepts: (recipients, parsed message)."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((sorted(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def inbox(app):
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port, MAIL_FROM="backups@test.example",
                      NOTIFY_EMAIL="owner@test.example")
    yield handler.messages
    controller.stop()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(app):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.config.update(NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/hooks/backup",
                      NOTIFY_WEBHOOK_SECRET="webhook-secret-value")
    yield server.received
    server.shutdown()
    server.server_close()
    thread.join()


def run_backup_job(app, run_worker, *, fail, scheduled=True):
    """A backup as a real job in a real worker; ``fail``: the disk is 'full' (a margin no disk has),
    so the procedure refuses it and the run really fails. Returns the run's id."""
    if fail:
        app.config.update(BACKUP_FREE_MARGIN_BYTES=10**18, RETENTION_ENABLED=False)
    with app.app_context():
        run = start("backup", parts="database")
        if scheduled:
            schedule = BackupSchedule(parts="database", frequency="daily", at_time="03:00", created_by="test")
            db.session.add(schedule)
            db.session.flush()
            run.schedule_id = schedule.id
            db.session.commit()
        run_id = run.id
    run_worker()
    return run_id


def get_run(app, run_id):
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        db.session.expunge(run)
        return run


def notify_events(app, action="notify.email"):
    with app.app_context():
        return db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action)).all()


def add_user(app, email, role="super_admin", active=True):
    with app.app_context():
        db.session.add(User(email=email, role=role, active=active, password_hash=FAST_HASH))
        db.session.commit()


def test_a_failed_scheduled_backup_sends_one_email_to_the_super_admins_and_notify_email(app, inbox, run_worker):
    add_user(app, "second-admin@test.example")
    add_user(app, "former-admin@test.example", active=False)
    run_id = run_backup_job(app, run_worker, fail=True)

    run = get_run(app, run_id)
    assert run.state == "failed" and "Not enough disk space" in run.error
    assert len(inbox) == 1
    recipients, message = inbox[0]
    assert recipients == ["owner@test.example", "second-admin@test.example", "super_admin@test.example"]
    assert message["Subject"] == f"[{app.config['STORE_NAME']}] Scheduled backup failed"
    assert message["From"] == "backups@test.example"
    text = message.get_content()
    assert run.error in text and run.id in text
    assert "/admin/tools/backup" in text and "flask backup create --parts database" in text
    assert "disk" in text and "UTC" in text
    for secret in (app.config["SECRET_KEY"], app.config["BACKUP_SIGNING_KEY"]):
        assert secret not in text
    [event] = notify_events(app)
    assert event.outcome == "success" and event.target == run_id

    with app.app_context():  # a second call for the same run (another process, a retry) sends nothing
        notify_run(db.session.get(JobRun, run_id))
    assert len(inbox) == 1 and len(notify_events(app)) == 1


def test_a_finished_backup_sends_nothing_unless_asked_to(app, inbox, run_worker):
    quiet = run_backup_job(app, run_worker, fail=False, scheduled=False)
    assert get_run(app, quiet).state == "finished"
    assert inbox == []

    app.config["NOTIFY_ON_SUCCESS"] = True
    told = run_backup_job(app, run_worker, fail=False, scheduled=False)
    run = get_run(app, told)
    assert run.state == "finished"
    assert len(inbox) == 1
    _, message = inbox[0]
    assert message["Subject"].endswith("] Backup finished")
    assert run.archive_name in message.get_content()


def test_an_smtp_server_that_is_down_changes_no_outcome_and_is_audited(app, run_worker):
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), NOTIFY_ON_SUCCESS=True)  # nobody listens
    run_id = run_backup_job(app, run_worker, fail=False, scheduled=False)
    run = get_run(app, run_id)
    assert run.state == "finished" and run.error is None  # the run's outcome stands
    [event] = notify_events(app)
    assert event.outcome == "failure" and event.target == run_id
    assert "ConnectionRefusedError" in event.detail

    with app.app_context():  # and in this process: it returns, it does not raise
        other = JobRun(id=uuid.uuid4().hex, kind="restore", parts="both", state="failed", started_by="cli")
        db.session.add(other)
        db.session.commit()
        notify_run(other)
    assert [e.outcome for e in notify_events(app)] == ["failure", "failure"]


def test_without_a_mail_server_nothing_is_sent_and_it_says_so(app, caplog):
    app.config["MAIL_SERVER"] = None
    with app.app_context():
        run = JobRun(id=uuid.uuid4().hex, kind="backup", parts="both", state="failed", started_by="scheduler",
                     error="The disk is full.")
        db.session.add(run)
        db.session.commit()
        with caplog.at_level(logging.INFO, logger="app.operations.notify"):
            notify_run(run)
    assert "No MAIL_SERVER configured" in caplog.text
    assert notify_events(app) == []


@pytest.mark.parametrize("kind, state, told", [
    ("backup", "started", False), ("backup", "queued", False), ("inspect", "failed", False),
    ("export", "failed", True), ("export", "finished", False), ("restore", "lost", True), ("backup", "skipped", True),
])
def test_which_runs_are_notified(app, inbox, kind, state, told):
    with app.app_context():
        run = JobRun(id=uuid.uuid4().hex, kind=kind, parts="database", state=state, started_by="scheduler")
        db.session.add(run)
        db.session.commit()
        notify_run(run)
    assert len(inbox) == (1 if told else 0)


def test_the_webhook_receives_a_signed_json_post(app, webhook, run_worker):
    run_id = run_backup_job(app, run_worker, fail=True)
    run = get_run(app, run_id)
    assert len(webhook) == 1
    path, headers, body = webhook[0]
    assert path == "/hooks/backup" and headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(b"webhook-secret-value", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Backup-Signature"], expected)
    payload = json.loads(body)
    assert payload["event"] == "backup.failed" and payload["run"] == run_id and payload["kind"] == "backup"
    assert payload["state"] == "failed" and payload["parts"] == "database" and payload["scheduled"] is True
    assert payload["store"] == app.config["STORE_NAME"] and payload["error"] == run.error
    assert payload["at"].endswith("Z")
    assert b"webhook-secret-value" not in body
    [event] = notify_events(app, "notify.webhook")
    assert event.outcome == "success"


def test_a_webhook_that_fails_is_audited_and_changes_nothing(app, run_worker):
    app.config.update(NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hook", NOTIFY_WEBHOOK_SECRET="s")
    run_id = run_backup_job(app, run_worker, fail=True)
    assert get_run(app, run_id).state == "failed"
    [event] = notify_events(app, "notify.webhook")
    assert event.outcome == "failure" and "/hook" not in event.detail


def test_without_redis_the_audit_log_keeps_a_run_from_being_notified_twice(app, inbox):
    with app.app_context():
        app.extensions["redis"] = Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))  # down
        run = JobRun(id=uuid.uuid4().hex, kind="backup", parts="both", state="failed", started_by="scheduler",
                     error="The job queue (Redis) stopped answering during the run.")
        db.session.add(run)
        db.session.commit()
        notify_run(run)
        notify_run(run)
        app.extensions.pop("redis").close()
    assert len(inbox) == 1


def test_a_failed_drill_sends_an_email_that_names_the_broken_row(app, inbox, run_worker):
    seed(app)
    name = broken(app, ORPHAN_LINE).name
    with app.app_context():
        run_id = start_run("trial", Caller("scheduler"), options={"trial": "drill", "name": name}).id
    run_worker()
    run = get_run(app, run_id)
    assert run.state == "failed" and "order_lines" in run.error
    assert len(inbox) == 1
    _, message = inbox[0]
    assert message["Subject"] == f"[{app.config['STORE_NAME']}] Restore drill failed"
    text = message.get_content()
    assert f"The restore drill of {name}" in text and "888888" in text
    assert f"flask backup drill {name}" in text and "the live store was not touched" in text
