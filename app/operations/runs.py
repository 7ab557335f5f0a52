"""Runs of operations: record and queue them, claim and finish them, keep their holder alive, and
bring a row in line with what Redis knows. The platform database is the truth about a run."""
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime

from flask import current_app
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app import audit
from app.extensions import db
from app.maintenance import extend_maintenance
from app.models import JobRun
from app.models.store import utcnow
from app.operations.notify import notify_run
from app.queue import LOCKS, SERIALIZER, OperationLock, cancel_key, enqueue, get_redis, heartbeat_key, heartbeat_ttl
from app.snapshot import SnapshotError

ACTIVE_STATES = ("queued", "started")
# A scheduled run waits (not in Redis yet) while another operation holds the store's lock, and is
# skipped, a final state, when it still holds it on the last try (app.operations.schedules).
WAITING, SKIPPED = "waiting", "skipped"
CANCELLED = "cancelled"
FINAL_STATES = ("finished", "failed", "lost", SKIPPED, CANCELLED)
# Kinds a person may stop while they run (a restore only until the store goes into maintenance).
CANCELLABLE_KINDS = ("export", "backup", "restore", "inspect", "copy", "trial", "staging")
HOLDER_PREFIX = "cli-"
log = logging.getLogger(__name__)


class RunRefused(Exception):
    """A run that cannot start; the message says why and what to do."""


class Cancelled(SnapshotError):
    """Raised inside a job whose run a person cancelled; the engine removes what it had half-written."""


class AlreadyStarted(RunRefused):
    """A run id that exists already (the primary key said so): nothing was started twice."""


def new_holder():
    """An id for an operation run outside the queue (the CLI): it holds locks and beats like a job."""
    return f"{HOLDER_PREFIX}{uuid.uuid4().hex}"


def store_lock(kind):
    """The lock a kind of run takes (None for kinds that run alongside anything)."""
    purpose = LOCKS.get(kind)
    if purpose is None:
        return None
    return OperationLock(get_redis(current_app), current_app.config["STORE_NAME"], purpose)


def start_run(kind, caller, *, parts="", options=None, run_id=None, schedule_id=None):
    """Record a run, take the store's lock when the kind needs it, and queue the job. A given
    ``run_id`` that exists already is refused by the primary key: a run is started once."""
    run = record_run(kind, caller, parts=parts, options=options, run_id=run_id, schedule_id=schedule_id)
    lock = store_lock(kind)
    if lock is not None and not lock.acquire(run.id, is_dead=run_is_over):
        db.session.delete(run)
        db.session.commit()
        audit.record(f"{kind}.start", target=parts, outcome="denied", detail="another operation is running",
                     actor=caller.actor, client_ip=caller.client_ip)
        raise RunRefused(busy_message(lock))
    return enqueue_run(run, caller, lock)


def record_run(kind, caller, *, parts="", options=None, run_id=None, state="queued", **fields):
    """The run's row, committed. It exists before the lock names it, so a contender never mistakes a new
    holder for a dead one. An id that exists already raises AlreadyStarted (the primary key decides)."""
    run = JobRun(id=run_id or uuid.uuid4().hex, kind=kind, parts=parts, state=state, started_by=caller.actor,
                 client_ip=caller.client_ip, options=options or {}, **fields)
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AlreadyStarted("This run was already started once; nothing was started again.") from None
    return run


def enqueue_run(run, caller, lock):
    """Queue the job of a queued run that holds its lock (``lock``, None for kinds without one)."""
    try:
        enqueue(current_app, run.kind, run.id)
    except Exception as error:  # Redis down: say so, and leave nothing claimed
        if lock is not None:
            lock.release(run.id)
        finish_run(run, "failed", error=f"The job queue is unavailable ({type(error).__name__}); nothing was started.")
        current_app.logger.exception("Could not enqueue %s run %s", run.kind, run.id)
        raise RunRefused("The job queue is unavailable right now; nothing was started. Try again in a minute, "
                         "and tell the platform team if it persists.") from None
    audit.record(f"{run.kind}.start", target=run.parts or run.kind, detail=f"run {run.id}", actor=caller.actor,
                 client_ip=caller.client_ip)
    return run


def claim_run(run_id, kind):
    """The job's first step: its run goes from queued to started, once. A run that is not queued
    (finished, failed, lost, already running) is never run again: no replays of an old job."""
    claimed = db.session.execute(
        update(JobRun).where(JobRun.id == run_id, JobRun.kind == kind, JobRun.state == "queued")
        .values(state="started", started_at=utcnow())
    ).rowcount
    db.session.commit()
    run = db.session.get(JobRun, run_id)
    if not claimed:
        state = run.state if run is not None else "unknown"
        audit.record(f"{kind}.replay", target=run_id, outcome="denied", actor="worker",
                     detail=f"job for a run that is {state}, not queued; not run")
        raise RunRefused(f"Run {run_id} is {state}, not queued: a job runs once, and this one was not run.")
    return run


def finish_run(run, state, *, error=None, result=None, archive_name=None):
    """End a run that is still active; False when it had already ended (e.g. declared lost)."""
    values = {"state": state, "ended_at": utcnow()}
    if error is not None:
        values["error"] = error
    if result is not None:
        values["result"] = result
    if archive_name is not None:
        values["archive_name"] = archive_name
    ended = db.session.execute(
        update(JobRun).where(JobRun.id == run.id, JobRun.state.in_(ACTIVE_STATES)).values(**values)
    ).rowcount
    db.session.commit()
    db.session.refresh(run)
    return bool(ended)


def fetch_job(run_id):
    try:
        return Job.fetch(run_id, connection=get_redis(current_app), serializer=SERIALIZER)
    except NoSuchJobError:
        return None


def busy_message(lock):
    return (f"Not started: {holder_description(lock)} is still running. Only one runs at a time; "
            "wait for it to finish and try again.")


def holder_description(lock):
    """Who holds the lock, for a person: 'a restore started by ann@example.com'."""
    current = lock.holder() or ""
    holder = db.session.get(JobRun, current)
    if holder is not None:
        who = "the scheduler" if holder.started_by == "scheduler" else holder.started_by.split(":", 1)[-1]
        return f"a {holder.kind} started by {who}"
    return "an operation started from the command line" if current.startswith(HOLDER_PREFIX) else "another operation"


def run_is_over(run_id):
    """For the lock: is this run finished, failed, or lost with its worker? A holder without a
    run row (a command-line operation) is alive exactly as long as its heartbeat."""
    run = db.session.get(JobRun, run_id)
    if run is None:
        return not _alive(run_id)
    return reconcile(run).state in FINAL_STATES


class Heartbeat(threading.Thread):
    """Tells the web side that the holder of a run (a job's worker, or a command) is alive.

    While it beats, the run is not lost and its lock cannot be taken over; it takes back a lock that
    vanished with a Redis restart, and keeps the maintenance of a restore from lapsing. When the
    holder dies it stops, and all of that expires within the heartbeat TTL.
    """

    def __init__(self, app, redis, holder, *, lock=None, extend_maintenance=False):
        super().__init__(name=f"heartbeat-{holder}", daemon=True)
        self.app, self.redis, self.holder = app, redis, holder
        self.key, self.ttl = heartbeat_key(holder), heartbeat_ttl(app)
        self.interval = max(self.ttl / 6, 0.5)
        self.lock = lock
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
        try:
            self.redis.delete(self.key)
        except (RedisConnectionError, RedisTimeoutError):
            pass  # the key expires by itself


@contextmanager
def holding(holder, kind, *, restore=False):
    """For the block: ``holder`` beats as alive and holds the lock its kind needs (taken already for a
    queued run: taking it again as the same holder succeeds). A killed holder releases everything when
    its heartbeat expires."""
    app = current_app._get_current_object()
    lock = store_lock(kind)
    heartbeat = Heartbeat(app, get_redis(app), holder, lock=lock, extend_maintenance=restore)
    heartbeat.mark_alive()  # alive before anyone can see it hold the lock
    if lock is not None and not lock.acquire(holder, is_dead=run_is_over):
        heartbeat.stop()
        raise RunRefused(busy_message(lock))
    heartbeat.start()
    try:
        yield holder
    finally:
        heartbeat.stop()
        if lock is not None:
            try:
                lock.release(holder)
            except (RedisConnectionError, RedisTimeoutError):
                # Redis went away after the work was done: the lock went with it, and the work stands.
                log.warning("Could not release the lock of %s; Redis is unavailable", holder)


def reconcile(run):
    """Bring the run's row in line with Redis: a job Redis no longer knows, or whose worker stopped
    sending heartbeats, is lost, never done. Only an active row changes (finish_run is conditional),
    so a worker that finished first keeps its result. A waiting scheduled run is in no queue yet: never lost."""
    if run.state in FINAL_STATES or run.state == WAITING:
        return run
    job = fetch_job(run.id)
    # A scheduled run that waited for the lock was queued at not_before (the real clock), not at created_at.
    queued_at = max(run.created_at, run.not_before) if run.not_before else run.created_at
    if job is None and run.state == "queued" and _seconds_since(queued_at) < heartbeat_ttl(current_app):
        return run  # between taking the lock and enqueueing: not lost, just young
    if job is None and run.state == "started" and not _missing_for_a_whole_ttl(run.id):
        return run  # Redis forgot the job (restarted): its worker gets one TTL to beat again
    if job is None:
        _declare_lost(run, "The job disappeared from the queue (Redis restarted or the job expired). "
                           "Nothing was reported as done; check the store and start again.")
        return run
    status = job.get_status(refresh=False)
    if status == JobStatus.FAILED:
        _end_failed(run, _rq_failure_message(job))
    elif status in (JobStatus.STOPPED, JobStatus.CANCELED):
        _end_failed(run, f"The job was {status.value}.")
    elif status == JobStatus.FINISHED:
        db.session.refresh(run)
    elif status == JobStatus.STARTED and not _alive(run.id) and _seconds_since(job.started_at) > heartbeat_ttl(current_app):
        _declare_lost(run, "The worker running this job stopped responding. Anything half-done was "
                           "rolled back; check the store and start again.")
    return run


def cancel_run(run, caller, phase_allows=True):
    """Cancel a run: a queued one never starts (its job is cancelled, its lock released); a running one is
    asked to stop at its next progress report (the job removes its partial file and frees the lock). A
    restore past its point of no return (``phase_allows`` False) cannot be cancelled: it completes or
    rolls back as a whole."""
    who = caller.name
    if run.state == WAITING:  # a scheduled run waiting for the lock: it holds nothing and is not queued
        ended = db.session.execute(update(JobRun).where(JobRun.id == run.id, JobRun.state == WAITING).values(
            state=CANCELLED, ended_at=utcnow(), error=f"Cancelled by {who} while it waited.")).rowcount
        db.session.commit()
        db.session.refresh(run)
        if not ended:
            raise RunRefused(f"This {run.kind} has already started or ended; nothing was cancelled.")
    elif run.state == "queued":
        job = fetch_job(run.id)
        if job is not None:
            job.cancel()
        if not finish_run(run, CANCELLED, error=f"Cancelled by {who} before it started."):
            raise RunRefused(f"This {run.kind} has already started or ended; nothing was cancelled.")
        lock = store_lock(run.kind)
        if lock is not None:
            lock.release(run.id)
    elif run.state == "started" and run.kind in CANCELLABLE_KINDS:
        if not phase_allows:
            raise RunRefused("This restore has started loading the archive: it cannot be cancelled any more. "
                             "It completes, or rolls back as a whole; the store is never left half-restored.")
        get_redis(current_app).set(cancel_key(run.id), who, ex=24 * 3600)
    else:
        raise RunRefused(f"This {run.kind} has already ended; nothing was cancelled.")
    audit.record(f"{run.kind}.cancel", target=run.id, detail=f"state was {run.state}", actor=caller.actor,
                 client_ip=caller.client_ip)
    return run


def _declare_lost(run, error):
    """A run nobody will finish: its row says so, and (once, by whoever noticed first) people are told."""
    if finish_run(run, "lost", error=error):
        notify_run(run)


def _end_failed(run, error):
    """A job RQ saw fail outside our code (a timeout, a killed work horse): the row says so, people are told."""
    if finish_run(run, "failed", error=error):
        notify_run(run)


def _missing_for_a_whole_ttl(run_id):
    """Has this run's holder sent no heartbeat for a whole TTL since we first missed it? After Redis
    restarts empty a live worker beats again within a sixth of the TTL; a dead one never does."""
    if _alive(run_id):
        return False
    redis, ttl = get_redis(current_app), heartbeat_ttl(current_app)
    key = f"run:{run_id}:missed-since"
    redis.set(key, time.time(), nx=True, ex=ttl * 4)
    since = redis.get(key)
    return since is not None and time.time() - float(since) >= ttl


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


def failure_message(error):
    """What a failed run says, in one line for the person who started it."""
    if isinstance(error, (SnapshotError, RunRefused)):
        return str(error)
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return ("The job queue (Redis) stopped answering during the run, so it was stopped. Anything unfinished "
                "was removed or rolled back; start again.")
    return (f"Unexpected error ({type(error).__name__}). Nothing was changed; "
            "the details are in the worker's log.")


def recent_runs(kind, within):
    """Runs of a kind started within the last ``within`` (a timedelta), newest first."""
    return db.session.scalars(
        db.select(JobRun).where(JobRun.kind == kind, JobRun.created_at > utcnow() - within)
        .order_by(JobRun.created_at.desc())).all()


__all__ = ["RunRefused", "Cancelled", "cancel_run", "AlreadyStarted", "start_run", "record_run", "enqueue_run", "claim_run", "finish_run",
           "reconcile", "holding", "new_holder",
           "failure_message", "fetch_job", "recent_runs"]
