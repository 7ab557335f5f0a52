"""The worker: runs exactly the registered job functions, with the project's serializer."""
import logging

from rq import Worker
from rq.job import Job
from rq.worker import SpawnWorker

from app.operations import archives, incoming
from app.operations.runs import new_holder, run_is_over, store_lock
from app.queue import JOB_FUNCTIONS, SERIALIZER, get_queue, get_redis
from jobs import functions
from jobs.context import worker_app

log = logging.getLogger(__name__)

# The only functions a worker runs, by the exact dotted name the web side enqueues (no prefixes).
REGISTRY = {
    JOB_FUNCTIONS["export"]: functions.export_store,
    JOB_FUNCTIONS["backup"]: functions.backup_store,
    JOB_FUNCTIONS["inspect"]: functions.inspect_archive,
    JOB_FUNCTIONS["restore"]: functions.restore_store,
    JOB_FUNCTIONS["copy"]: functions.copy_archive,
    JOB_FUNCTIONS["trial"]: functions.try_archive,
    JOB_FUNCTIONS["staging"]: functions.make_staging,
}


class UnsafeJob(RuntimeError):
    """A job that is not exactly one of ours; it is never imported or run."""


class RegisteredJob(Job):
    """Whoever can write to Redis could enqueue any callable (or callback); this job class runs only a
    registered function, called with one run id and nothing else, and no callbacks at all."""

    @property
    def func(self):
        name = self.func_name
        function = REGISTRY.get(name)
        if function is None or self.instance is not None:
            raise UnsafeJob(f"Refusing to run {name!r}: it is not one of the registered job functions.")
        if self.kwargs or len(self.args) != 1 or not isinstance(self.args[0], str):
            raise UnsafeJob(f"Refusing to run {name!r} with arguments other than one run id.")
        return function

    def _no_callback(self, which):
        if getattr(self, f"_{which}_callback_name", None):
            raise UnsafeJob(f"Refusing a job with a {which} callback: this worker runs no callbacks.")
        return None

    @property
    def success_callback(self):
        return self._no_callback("success")

    @property
    def failure_callback(self):
        return self._no_callback("failure")

    @property
    def stopped_callback(self):
        return self._no_callback("stopped")


def recover_after_crash():
    """At worker start: finish or undo a restore that a killed worker left half-done, and remove
    uploads nobody restored."""
    app = worker_app()
    with app.app_context():
        incoming.remove_stale()
        lock, holder = store_lock("restore"), f"recovery-{new_holder()}"
        if not lock.acquire(holder, is_dead=run_is_over):
            return  # a live backup or restore holds the lock; it recovers before it starts
        try:
            for action in archives.recover():
                log.warning("Recovered: %s", action)
        finally:
            lock.release(holder)


class _StoreWorkerMixin:
    """Whatever job class a command line names, this worker runs RegisteredJob."""

    def __init__(self, *args, **kwargs):
        kwargs["job_class"] = RegisteredJob
        super().__init__(*args, **kwargs)


class StoreWorker(_StoreWorkerMixin, Worker):
    """`rq worker --worker-class jobs.worker.StoreWorker`: recovers, then works like any RQ worker."""

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        recover_after_crash()


class StoreSpawnWorker(_StoreWorkerMixin, SpawnWorker):
    """The same for the demo, whose work horses are spawned rather than forked."""

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        recover_after_crash()


def make_worker(app, worker_class=StoreWorker):
    return worker_class([get_queue(app)], connection=get_redis(app), serializer=SERIALIZER)
