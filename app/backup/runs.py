"""Runs of export, backup, inspect and restore jobs: start them, and tell how they are doing."""
import logging
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from app import audit
from app.extensions import db
from app.maintenance import extend_maintenance
from app.models import JobRun
from app.models.store import utcnow
from app.queue import LOCKING_KINDS, SERIALIZER, OperationLock, enqueue, get_redis, heartbeat_key, heartbeat_ttl

FINAL_STATES = ("finished", "failed", "lost")
log = logging.getLogger(__name__)


class RunRefused(Exception):
    """A run that cannot start; the message says why and what to do."""


def operation_lock():
    return OperationLock(get_redis(current_app), current_app.config["STORE_NAME"])


def start_run(kind, *, actor, client_ip, parts="", options=None):
    """Record a run, take the store's lock when the kind needs it, and queue the job."""
    run = JobRun(id=uuid.uuid4().hex, kind=kind, parts=parts, state="queued", started_by=actor,
                 client_ip=client_ip, options=options or {})
    # The row exists before the lock names it, so a contender never mistakes a new holder for a dead one.
    db.session.add(run)
    db.session.commit()
    lock = operation_lock() if kind in LOCKING_KINDS else None
    if lock is not None and not lock.acquire(run.id, is_dead=run_is_over):
        db.session.delete(run)
        db.session.commit()
        audit.record(f"{kind}.start", target=parts, outcome="denied", detail="another operation is running")
        raise RunRefused(_busy_message(lock))
    try:
        enqueue(current_app, kind, run.id)
    except Exception as error:  # Redis down: say so, and leave nothing claimed
        if lock is not None:
            lock.release(run.id)
        finish_run(run, "failed", error=f"The job queue is unavailable ({type(error).__name__}); nothing was started.")
        current_app.logger.exception("Could not enqueue %s run %s", kind, run.id)
        raise RunRefused("The job queue is unavailable right now; nothing was started. Try again in a minute, "
                         "and tell the platform team if it persists.") from None
    audit.record(f"{kind}.start", target=parts or kind, detail=f"run {run.id}")
    return run


def finish_run(run, state, *, error=None, result=None):
    run.state = state
    run.ended_at = run.ended_at or utcnow()
    if error is not None:
        run.error = error
    if result is not None:
        run.result = result
    db.session.commit()


def fetch_job(run_id):
    try:
        return Job.fetch(run_id, connection=get_redis(current_app), serializer=SERIALIZER)
    except NoSuchJobError:
        return None


def _busy_message(lock):
    current = lock.holder() or ""
    holder = db.session.get(JobRun, current)
    what = (f"a {holder.kind} started by {holder.started_by.split(':', 1)[-1]}" if holder else
            "a backup or restore started from the command line" if current.startswith(CLI_HOLDER) else
            "another operation")
    return (f"Not started: {what} is still running. Only one backup or restore runs at a time; "
            "wait for it to finish and try again.")


def run_is_over(run_id):
    """For the lock: is this run finished, failed, or lost with its worker? A holder without a
    run row (a command-line operation) is alive exactly as long as its heartbeat."""
    run = db.session.get(JobRun, run_id)
    if run is None:
        return not _alive(run_id)
    return reconcile(run).state in FINAL_STATES


CLI_HOLDER = "cli-"


class Heartbeat(threading.Thread):
    """Tells the web side that the holder of a run (a job's worker, or a command) is alive.

    While it beats, the run is not lost and its lock cannot be taken over; it takes back a lock that
    vanished with a Redis restart, and keeps the maintenance of a restore from lapsing. When the
    holder dies it stops, and all of that expires within the heartbeat TTL.
    """

    def __init__(self, app, redis, holder, *, holds_lock=False, extend_maintenance=False):
        super().__init__(name=f"heartbeat-{holder}", daemon=True)
        self.app, self.redis, self.holder = app, redis, holder
        self.key, self.ttl = heartbeat_key(holder), heartbeat_ttl(app)
        self.interval = max(self.ttl / 6, 0.5)
        self.lock = OperationLock(redis, app.config["STORE_NAME"]) if holds_lock else None
        self.extend_maintenance = extend_maintenance
        self.stopped = threading.Event()

    def mark_alive(self):
        self.redis.set(self.key, "1", ex=self.ttl)

    def beat(self):
        self.mark_alive()
        if self.lock is not None and self.lock.keep(self.holder) != self.holder:
            log.error("Run %s: the store's lock is held by %s; another operation started meanwhile",
                      self.holder, self.lock.holder())
        if self.extend_maintenance:
            extend_maintenance(self.app)

    def run(self):
        while not self.stopped.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is not worth stopping the work for
                log.exception("heartbeat failed")

    def stop(self):
        self.stopped.set()
        if self.is_alive():
            self.join()
        self.redis.delete(self.key)


@contextmanager
def command_line_operation(restore=False):
    """The store's lock for a backup or restore run outside the queue (the CLI): web starts are
    refused meanwhile, and a killed command releases the store when its heartbeat expires."""
    app = current_app._get_current_object()
    holder = f"{CLI_HOLDER}{uuid.uuid4().hex}"
    heartbeat = Heartbeat(app, get_redis(app), holder, holds_lock=True, extend_maintenance=restore)
    heartbeat.mark_alive()  # alive before anyone can see it hold the lock
    lock = operation_lock()
    if not lock.acquire(holder, is_dead=run_is_over):
        heartbeat.stop()
        raise RunRefused(_busy_message(lock))
    heartbeat.start()
    try:
        yield holder
    finally:
        heartbeat.stop()
        lock.release(holder)


def reconcile(run):
    """Bring the run's row in line with Redis: a job Redis no longer knows, or whose worker stopped
    sending heartbeats, is lost, never done."""
    if run.state in FINAL_STATES:
        return run
    job = fetch_job(run.id)
    if job is None and run.state == "queued" and _seconds_since(run.created_at) < heartbeat_ttl(current_app):
        return run  # between taking the lock and enqueueing: not lost, just young
    if job is None and run.state == "started" and _alive(run.id):
        return run  # Redis forgot the job (restarted) but its worker still beats: it is running
    if job is None:
        finish_run(run, "lost", error="The job disappeared from the queue (Redis restarted or the job expired). "
                                      "Nothing was reported as done; check the store and start again.")
        return run
    status = job.get_status(refresh=False)
    if status == JobStatus.FAILED:
        db.session.refresh(run)
        if run.state not in FINAL_STATES:  # the worker died before the job could record its failure
            finish_run(run, "failed", error=_rq_failure_message(job))
    elif status in (JobStatus.STOPPED, JobStatus.CANCELED):
        finish_run(run, "failed", error=f"The job was {status.value}.")
    elif status == JobStatus.FINISHED:
        db.session.refresh(run)
    elif status == JobStatus.STARTED and not _alive(run.id) and _seconds_since(job.started_at) > heartbeat_ttl(current_app):
        finish_run(run, "lost", error="The worker running this job stopped responding. Anything half-done was "
                                      "rolled back; check the store and start again.")
    return run


def _alive(run_id):
    return bool(get_redis(current_app).exists(heartbeat_key(run_id)))


def _seconds_since(moment):
    if moment is None:
        return 0
    return (datetime.now(moment.tzinfo) - moment).total_seconds() if moment.tzinfo else (utcnow() - moment).total_seconds()


def _rq_failure_message(job):
    result = job.latest_result()
    text = (result.exc_string if result is not None and result.exc_string else "") or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f"The job failed: {lines[-1]}" if lines else "The job failed (its worker stopped unexpectedly)."


def progress_of(run):
    """What the status fragment and its JSON twin show: state, phase, percent, counts, timing."""
    job = fetch_job(run.id) if run.state not in FINAL_STATES else None
    meta = (job.get_meta(refresh=False) if job is not None else None) or {}
    done, total = meta.get("done") or 0, meta.get("total")
    percent = 100 if run.state == "finished" else (min(99, int(done * 100 / total)) if total else None)
    started = run.started_at or (job.started_at.replace(tzinfo=None) if job is not None and job.started_at else None)
    elapsed = ((run.ended_at or utcnow()) - started).total_seconds() if started else 0
    eta = None
    if run.state == "started" and total and done and 0 < done < total:
        eta = elapsed * (total - done) / done
    return {
        "state": run.state,
        "phase": meta.get("phase") or ("done" if run.state == "finished" else run.state),
        "percent": percent,
        "done": done,
        "total": total,
        "unit": meta.get("unit") or "",
        "message": run.error if run.state in ("failed", "lost") else meta.get("message") or "",
        "elapsed": elapsed,
        "eta": eta,
    }
