"""The job functions the worker runs: ids in, an app context, one engine call, progress into job.meta."""
import logging
import time

from rq import get_current_job

from jobs.context import worker_app

log = logging.getLogger(__name__)

META_INTERVAL = 0.5  # seconds between two progress writes to Redis


def export_store(run_id):
    return _execute(run_id, _export)


def backup_store(run_id):
    return _execute(run_id, _backup)


def inspect_archive(run_id):
    return _execute(run_id, _inspect)


def restore_store(run_id):
    return _execute(run_id, _restore)


class Progress:
    """The engine's progress callback: writes phase, counts and message into job.meta, at a bounded rate."""

    def __init__(self, job):
        self.job = job
        self.last_write = 0.0
        self.last_phase = None

    def __call__(self, event):
        now = time.monotonic()
        if event.phase == self.last_phase and now - self.last_write < META_INTERVAL:
            return
        self.last_phase, self.last_write = event.phase, now
        self.job.meta.update(phase=event.phase, done=event.done, total=event.total, unit=event.unit,
                             message=event.message)
        self.job.save_meta()

    def say(self, phase, message):
        self.job.meta.update(phase=phase, done=0, total=None, unit="", message=message)
        self.job.save_meta()
        self.last_phase, self.last_write = phase, time.monotonic()


def _execute(run_id, work):
    from app import audit
    from app.backup.runs import Heartbeat, finish_run
    from app.extensions import db
    from app.models import JobRun
    from app.models.store import utcnow
    from app.queue import LOCKING_KINDS, OperationLock

    app = worker_app()
    job = get_current_job()
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        if run is None:
            raise LookupError(f"No run {run_id} in the platform database; nothing was done.")
        run.state, run.started_at = "started", utcnow()
        db.session.commit()
        heartbeat = Heartbeat(app, job.connection, run_id, holds_lock=run.kind in LOCKING_KINDS,
                              extend_maintenance=run.kind == "restore")
        heartbeat.beat()
        heartbeat.start()
        actor, ip = run.started_by, run.client_ip
        try:
            if run.kind in LOCKING_KINDS:  # we hold the lock: nobody else is mid-restore
                from app.backup import service

                service.recover()
            result = work(app, run, Progress(job))
        except Exception as error:
            db.session.rollback()
            message = _failure_message(error)
            finish_run(run, "failed", error=message)
            audit.record(f"{run.kind}.finish", target=run.archive_name or run.parts, outcome="failure",
                         detail=message, actor=actor, client_ip=ip)
            raise
        finally:
            heartbeat.stop()
            if run.kind in LOCKING_KINDS:
                OperationLock(job.connection, app.config["STORE_NAME"]).release(run_id)
        finish_run(run, "finished", result=result)
        audit.record(f"{run.kind}.finish", target=run.archive_name or run.parts, detail=f"run {run_id}",
                     actor=actor, client_ip=ip)
        return result


def _failure_message(error):
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

    from app.snapshot import SnapshotError

    if isinstance(error, SnapshotError):
        return str(error)
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return ("The job queue (Redis) stopped answering during the run, so it was stopped. Anything unfinished "
                "was removed or rolled back; start again.")
    return (f"Unexpected error ({type(error).__name__}: {error}). Nothing was changed; "
            "the details are in the worker's log.")


def _created_by(run):
    return run.started_by.split(":", 1)[-1]


def _export(app, run, progress):
    from app.backup import service

    path = service.export(created_by=_created_by(run), progress=progress)
    run.archive_name = path.name
    return {"archive": path.name, "size": path.stat().st_size}


def _backup(app, run, progress):
    from app.backup import service

    path = service.backup(run.parts, created_by=_created_by(run), progress=progress)
    run.archive_name = path.name
    return {"archive": path.name, "size": path.stat().st_size}


def _inspect(app, run, progress):
    from app.backup import review, service, uploads

    progress.say("verify", "Checking the archive's signature, checksums and contents")
    source = uploads.source_path(run.options)
    try:
        summary = service.inspect(source)
    except service.SnapshotError:
        if run.options.get("source") == "upload":
            source.unlink(missing_ok=True)  # a refused upload is of no further use; keep nothing of it
        raise
    run.archive_name = run.options.get("name")
    return {"summary": review.summary_dict(summary), "current": review.compare_with_store(summary)}


def _restore(app, run, progress):
    from app.backup import service, uploads
    from app.maintenance import maintenance_during

    options = run.options
    source = uploads.source_path(options)
    run.archive_name = options.get("name")
    safety = None
    if options.get("safety"):
        progress.say("safety", "Taking a safety backup of the current store")
        safety = service.backup(run.parts, created_by=_created_by(run), progress=progress, safety=True,
                                label="Safety backup before restore").name
    progress.say("maintenance", "Putting the storefront into maintenance")
    with maintenance_during("restore", app):
        result = service.restore(source, run.parts, progress=progress)
        service.end_store_sessions()
    return {"restored": run.parts, "safety_backup": safety, "details": result}
