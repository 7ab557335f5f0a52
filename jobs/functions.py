"""The job functions the worker runs: a run id in, an app context, one operation call, progress
into job.meta. The run's row (platform database) is the truth: claimed once, finished once."""
import logging
import time

from redis.exceptions import RedisError
from rq import get_current_job

from app.extensions import db
from app.models import JobRun
from app.operations import Caller, archives, incoming, offsite, runs
from app.operations.notify import notify_run
from app.queue import cancel_key
from app.operations.procedures import run_backup, run_export, run_inspect, run_restore, run_staging, run_trial
from app.snapshot import SnapshotError
from jobs.context import worker_app

log = logging.getLogger(__name__)

META_INTERVAL = 0.5  # seconds between two progress writes to Redis


class Progress:
    """The engine's progress callback: writes phase, counts and message into job.meta, at a bounded
    rate. Redis is for showing progress only: a write that fails is skipped, the work goes on."""

    def __init__(self, job, clock=time.monotonic, kind=None):
        self.job, self.clock, self.kind = job, clock, kind
        self.last_write = 0.0
        self.last_phase = None
        # A restore can be cancelled until the store goes into maintenance, not after.
        self.cancellable = True

    def __call__(self, event):
        now = self.clock()
        if self.kind == "restore" and event.phase == "maintenance":
            self.cancellable = False
        if event.phase == self.last_phase and now - self.last_write < META_INTERVAL:
            return
        self.last_phase, self.last_write = event.phase, now
        if self.cancellable:
            self._stop_if_cancelled()
        self.job.meta.update(phase=event.phase, done=event.done, total=event.total, unit=event.unit,
                             message=event.message, cancellable=self.cancellable)
        try:
            self.job.save_meta()
        except RedisError:
            log.warning("Could not write the progress of job %s to Redis; going on", self.job.id)

    def _stop_if_cancelled(self):
        try:  # the job's own connection: the same Redis the page wrote the request to
            who = self.job.connection.get(cancel_key(self.job.id))
        except RedisError:
            return
        if who:
            who = who.decode() if isinstance(who, bytes) else who
            raise runs.Cancelled(f"Cancelled by {who}. Nothing was kept of it: the partial file was removed.")


def export_store(run_id):
    return _execute(run_id, "export", _export)


def backup_store(run_id):
    return _execute(run_id, "backup", _backup)


def inspect_archive(run_id):
    return _execute(run_id, "inspect", _inspect)


def restore_store(run_id):
    return _execute(run_id, "restore", _restore)


def copy_archive(run_id):
    return _execute(run_id, "copy", _copy)


def try_archive(run_id):
    return _execute(run_id, "trial", _trial)


def make_staging(run_id):
    return _execute(run_id, "staging", _staging)


def _execute(run_id, kind, work):
    app = worker_app()
    job = get_current_job()
    with app.app_context():
        run = runs.claim_run(run_id, kind)
        caller = Caller(run.started_by, run.client_ip)
        try:
            result, archive_name = work(run, caller, Progress(job, kind=kind))
        except Exception as error:
            db.session.rollback()
            state = runs.CANCELLED if isinstance(error, runs.Cancelled) else "failed"
            runs.finish_run(run, state, error=runs.failure_message(error))
            notify_run(run)  # never raises: the run's outcome is already written
            raise
        if not runs.finish_run(run, "finished", result=result, archive_name=archive_name):
            _discard_result_of_ended_run(run, kind, archive_name)
        notify_run(run)
        return result


def _discard_result_of_ended_run(run, kind, archive_name):
    """The run was declared lost (or failed) while this worker still finished it: its row stays the
    truth, so an archive it made is removed rather than listed as a normal backup."""
    if kind in ("export", "backup") and archive_name:
        try:
            archives.delete(archive_name)
        except (SnapshotError, FileNotFoundError):
            pass
    log.warning("Run %s ended as %s before its worker finished; its result was discarded", run.id, run.state)


def _archive_result(kept):
    """A new archive's name and size (a local file, or an object in the bucket)."""
    size = kept.stat().st_size if archives.kept_locally() else kept.size
    return {"archive": kept.name, "size": size}, kept.name


def _export(run, caller, progress):
    return _archive_result(run_export(caller, holder=run.id, progress=progress))


def _backup(run, caller, progress):
    return _archive_result(run_backup(run.parts, caller, holder=run.id, progress=progress))


def _in_users_words(error, source, options):
    """An uploaded file is stored under a random name of ours: messages name the user's file instead."""
    original = (options or {}).get("original_name")
    if source is not None and original and error.args and isinstance(error.args[0], str):
        error.args = (error.args[0].replace(source.name, original),) + error.args[1:]
    return error


def _inspect(run, caller, progress):
    source = incoming.source_path(run.options, progress)
    try:
        result = run_inspect(source, caller, holder=run.id, progress=progress)
    except SnapshotError as error:
        incoming.discard(run.options)  # a refused upload is of no further use; keep nothing of it
        raise _in_users_words(error, source, run.options)
    finally:
        incoming.release(source)  # a copy fetched from the bucket: the restore fetches its own
    return result, run.options.get("name")


def _restore(run, caller, progress):
    options = run.options
    source = None
    try:
        source = incoming.source_path(options, progress)
        result = run_restore(source, run.parts, caller, holder=run.id,
                             safety=bool(options.get("safety")), accept_other_store=bool(options.get("other_store")),
                             keep_accounts=bool(options.get("keep_accounts")), progress=progress,
                             expected_sha256=options.get("sha256"), try_first=bool(options.get("try_first")))
    except SnapshotError as error:
        raise _in_users_words(error, source, options)
    finally:
        incoming.release(source)
        incoming.discard(options)
    return result, options.get("name")


def _copy(run, caller, progress):
    """Copy one archive to every enabled destination (or the one the run names); the run fails, saying
    which, when a copy failed (each copy's row says why and when it is tried again)."""
    name, destination = run.options.get("name", ""), run.options.get("destination")
    if destination:
        copies = [offsite.copy_archive(name, destination, progress=progress, caller=caller)]
    else:
        copies = offsite.copy_to_all(name, progress=progress, caller=caller)
    failed = [c for c in copies if c.state == "failed"]  # "copying": another process has it in hand
    if failed:
        raise offsite.OffsiteError("; ".join(f"the copy of {name} failed: {c.error}" for c in failed))
    return {"archive": name, "copies": len(copies)}, name


def _trial(run, caller, progress):
    """A dry run of the archive under review (an upload stays for the restore that may follow), or a
    Verify or drill of a kept archive."""
    options = run.options or {}
    source = None
    try:
        source = incoming.source_path(options, progress)
        result = run_trial(options.get("trial", "verify"), source, caller, parts=run.parts or None,
                           keep_accounts=bool(options.get("keep_accounts")), progress=progress,
                           sha256=_reviewed_sha256(options))
    except SnapshotError as error:
        raise _in_users_words(error, source, options)
    finally:
        incoming.release(source)
    return result, options.get("name")


def _reviewed_sha256(options):
    """A dry run from a review: the SHA-256 its check recorded (the trial never reads the archive for it)."""
    inspection = db.session.get(JobRun, options["inspection"]) if options.get("inspection") else None
    return (inspection.result or {}).get("sha256") if inspection is not None else None


def _staging(run, caller, progress):
    name = (run.options or {}).get("name", "")
    return run_staging(name, caller, progress=progress), name

