"""Tell the store's owners when a backup or restore needs their attention: an email to the store's
super-admins (and NOTIFY_EMAIL), and an optional signed JSON webhook.

notify_run never raises and never holds a job for long: every failure is logged and audited, and a
run is notified once, however often it is called (a Redis SET NX claims it)."""
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import urllib.request
from email.message import EmailMessage
from urllib.parse import urlsplit

from flask import current_app
from redis.exceptions import RedisError

from app import audit
from app.extensions import db
from app.models import AuditEvent, User
from app.models.store import utcnow
from app.queue import get_redis

SMTP_TIMEOUT = 10     # seconds, per SMTP step
WEBHOOK_TIMEOUT = 5   # seconds
CLAIM_TTL = 30 * 24 * 3600
PAGE = "/admin/tools/backup"
ACTOR = "notify"
# The end states worth a message, per kind ("finished" only with NOTIFY_ON_SUCCESS).
PROBLEMS = {"backup": ("failed", "lost", "skipped"), "restore": ("failed", "lost", "skipped"),
            "export": ("failed", "lost"), "copy": ("failed", "lost"), "trial": ("failed", "lost")}
SUCCESS_KINDS = ("backup", "restore")
PART_WORDS = {"database": "the database", "files": "the uploaded files",
              "both": "the database and the uploaded files"}
STATE_WORDS = {"failed": "failed", "lost": "did not finish", "skipped": "was skipped", "finished": "finished"}

log = logging.getLogger(__name__)


def notify_run(run):
    """Email (and webhook) about a run that ended badly, or well with NOTIFY_ON_SUCCESS. Never raises."""
    try:
        if not should_notify(run) or not _claim(run):
            return
    except Exception:  # a notification must never change a run's outcome
        log.exception("Could not notify about run %s", getattr(run, "id", "?"))
        return
    for send in (_send_email, _send_webhook):
        try:
            send(run)
        except Exception:
            log.exception("Could not notify about run %s", run.id)


def should_notify(run):
    if run.state in PROBLEMS.get(run.kind, ()):
        return True
    return run.state == "finished" and run.kind in SUCCESS_KINDS and current_app.config["NOTIFY_ON_SUCCESS"]


def _claim(run):
    """True the first time for a run. Without Redis, an earlier audit record of it says it was done."""
    key = f"store:{current_app.config['STORE_NAME']}:run:{run.id}:notified"
    try:
        return bool(get_redis(current_app).set(key, "1", nx=True, ex=CLAIM_TTL))
    except RedisError:
        log.warning("Redis unavailable; checking the audit log before notifying about run %s", run.id)
    done = db.session.scalar(db.select(AuditEvent.id).where(
        AuditEvent.action.in_(("notify.email", "notify.webhook")), AuditEvent.target == run.id).limit(1))
    return done is None


def _trial_words(run):
    """'Restore drill', 'Verify by restore' or 'Dry run' for a trial run."""
    return {"drill": "Restore drill", "verify": "Verify by restore"}.get((run.options or {}).get("trial"), "Dry run")


def title(run):
    """'Scheduled backup failed', 'Restore did not finish', 'Export failed', 'Restore drill failed' ..."""
    what = "Off-site copy" if run.kind == "copy" else run.kind.capitalize()
    if run.kind == "trial":
        what = _trial_words(run)
    if run.schedule_id is not None:
        what = f"Scheduled {run.kind}"
    return f"{what} {STATE_WORDS.get(run.state, run.state)}"


def subject(run):
    return f"[{current_app.config['STORE_NAME']}] {title(run)}"


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"


def _advice(run):
    if run.state == "finished":
        return [f"Nothing to do. The backup page shows it: {PAGE}"]
    if run.kind == "restore":
        retry = "flask backup restore ARCHIVE --parts " + (run.parts or "both")
        first = ("A restore that fails is rolled back: the store should be as it was before. "
                 "Check the storefront and the backup page to be sure.")
    elif run.kind == "export":
        retry, first = "flask backup export", "Your store was not changed."
    elif run.kind == "trial":
        retry = f"flask backup drill {(run.options or {}).get('name', '')}".rstrip()
        first = ("The backup could not be restored into a scratch store (the live store was not touched): until "
                 "this is solved, do not count on it. Make a new backup and verify it; keep older backups that pass.")
    elif run.kind == "copy":
        retry = f"flask backup copy {(run.options or {}).get('name', 'ARCHIVE')}"
        first = ("The backup itself is kept on the server, and retention keeps it until a copy is verified; "
                 "the copy is tried again automatically.")
    else:
        retry = f"flask backup create --parts {run.parts or 'both'}"
        first = ("Your store was not changed, but this backup does not exist: until one succeeds, "
                 "the newest backup is an older one.")
    again = "see what happened" if run.kind == "restore" else "see recent runs and start it again"
    steps = [first, f"Open the backup page to {again}: {PAGE}"]
    if run.state == "skipped":
        steps.append("It was skipped because another backup or restore was still running. If that keeps "
                     "happening, space out the schedules.")
    else:
        steps.append("Check that the server's disk has enough free space for the backups folder.")
    steps.append(f"Whoever runs the server can also try again from the command line: {retry}")
    steps.append("If it fails again, forward this email to the people who host your store.")
    return steps


def body(run):
    store = current_app.config["STORE_NAME"]
    parts = PART_WORDS.get(run.parts, run.parts or "the store")
    scheduled = "scheduled " if run.schedule_id is not None else ""
    if run.kind == "trial":
        first = (f"The {_trial_words(run).lower()} of {(run.options or {}).get('name', 'a backup')} of {store} "
                 f"{STATE_WORDS.get(run.state, run.state)}.")
    elif run.kind == "copy":
        first = f"The off-site copy of {(run.options or {}).get('name', 'a backup')} of {store} {STATE_WORDS.get(run.state, run.state)}."
    else:
        first = f"The {scheduled}{run.kind} of {parts} of {store} {STATE_WORDS.get(run.state, run.state)}."
    lines = [first, "", f"When: {_when(run.ended_at or utcnow())}"]
    if run.slot is not None:
        lines.append(f"Planned for: {_when(run.slot)}")
    lines.append(f"Run: {run.id}")
    if run.error:
        lines.append(f"What went wrong: {run.error}")
    if run.state == "finished" and run.archive_name:
        lines.append(f"{'Restored from' if run.kind == 'restore' else 'Backup file'}: {run.archive_name}")
    lines += ["", "What to do:"] + [f"- {step}" for step in _advice(run)]
    lines += ["", f"This message was sent by {store}'s backup service."]
    return "\n".join(lines) + "\n"


def recipients():
    """The store's active super-admins, plus NOTIFY_EMAIL; in order, without repeats."""
    found = []
    try:
        found = list(db.session.scalars(db.select(User.email).where(User.role == "super_admin", User.active.is_(True))
                                        .order_by(User.id)))
    except Exception:  # the store database may be what failed; NOTIFY_EMAIL still hears of it
        db.session.rollback()
        log.exception("Could not read the store's super-admins for a notification")
    extra = current_app.config.get("NOTIFY_EMAIL")
    if extra:
        found.append(extra)
    return list(dict.fromkeys(found))


def _send_email(run):
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        log.info("No MAIL_SERVER configured; no email about run %s (%s)", run.id, title(run))
        return
    to = recipients()
    if not to:
        log.warning("No one to email about run %s: no active super-admin and no NOTIFY_EMAIL", run.id)
        return
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject(run), config["MAIL_FROM"], ", ".join(to)
    message.set_content(body(run))
    try:
        with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=SMTP_TIMEOUT) as smtp:
            if config.get("MAIL_USE_TLS"):
                smtp.starttls(context=ssl.create_default_context())
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        log.warning("Could not email about run %s: %s", run.id, type(error).__name__)
        _audit("notify.email", run, "failure", f"{title(run)}: email not sent ({_describe(error)})")
        return
    _audit("notify.email", run, "success", f"{title(run)}: emailed {len(to)} recipient(s)")


def webhook_payload(run):
    return {"event": f"{run.kind}.{run.state}", "store": current_app.config["STORE_NAME"], "run": run.id,
            "kind": run.kind, "parts": run.parts, "state": run.state, "error": run.error,
            "scheduled": run.schedule_id is not None, "at": (run.ended_at or utcnow()).isoformat() + "Z"}


def signature(payload, secret):
    """The X-Backup-Signature header's value for a body: sha256=<hex HMAC-SHA256 with the secret>."""
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _send_webhook(run):
    config = current_app.config
    url = config.get("NOTIFY_WEBHOOK_URL")
    if not url:
        return
    if urlsplit(url).scheme not in ("http", "https"):
        _audit("notify.webhook", run, "failure", "NOTIFY_WEBHOOK_URL is not an http(s) address; nothing sent")
        return
    payload = json.dumps(webhook_payload(run), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "store-backup-notify"}
    if config.get("NOTIFY_WEBHOOK_SECRET"):
        headers["X-Backup-Signature"] = signature(payload, config["NOTIFY_WEBHOOK_SECRET"])
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            status = response.status
    except OSError as error:  # URLError, HTTPError, timeouts
        log.warning("Could not call the notification webhook about run %s: %s", run.id, type(error).__name__)
        _audit("notify.webhook", run, "failure", f"{title(run)}: webhook failed ({_describe(error)})")
        return
    _audit("notify.webhook", run, "success", f"{title(run)}: webhook answered {status}")


def _describe(error):
    """The error's kind and short text (server answers, errno); never the address or the credentials."""
    reason = getattr(error, "reason", None) or getattr(error, "smtp_error", None) or getattr(error, "strerror", None)
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    return f"{type(error).__name__}: {reason}"[:300] if reason else type(error).__name__


def _audit(action, run, outcome, detail):
    try:
        audit.record(action, target=run.id, outcome=outcome, detail=detail, actor=ACTOR)
    except Exception:
        log.exception("Could not audit %s for run %s", action, run.id)


__all__ = ["notify_run", "should_notify", "subject", "body", "recipients", "webhook_payload", "signature"]
