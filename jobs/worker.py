"""The worker: runs only functions from the jobs package, with the project's serializer."""
import logging
import uuid

from rq import Worker
from rq.job import Job
from rq.worker import SpawnWorker

from app.queue import SERIALIZER, get_queue, get_redis


class UnsafeJob(RuntimeError):
    """A job named a function outside the jobs package; it is never imported or run."""


class JobsOnlyJob(Job):
    """Whoever can write to Redis could enqueue any callable; this worker imports only jobs.*."""

    @property
    def func(self):
        name = self.func_name or ""
        if not name.startswith("jobs.") or name.startswith("jobs.worker"):
            raise UnsafeJob(f"Refusing to run {name!r}: only functions of the jobs package run here.")
        return super().func


log = logging.getLogger(__name__)


def recover_after_crash():
    """At worker start: finish or undo a restore that a killed worker left half-done."""
    from app.backup import service
    from app.backup.runs import operation_lock, run_is_over
    from jobs.context import worker_app

    app = worker_app()
    with app.app_context():
        lock, holder = operation_lock(), f"recovery-{uuid.uuid4().hex}"
        if not lock.acquire(holder, is_dead=run_is_over):
            return  # a live backup or restore holds the lock; it recovers before it starts
        try:
            for action in service.recover():
                log.warning("Recovered: %s", action)
        finally:
            lock.release(holder)


class StoreWorker(Worker):
    """`rq worker --worker-class jobs.worker.StoreWorker`: recovers, then works like any RQ worker."""

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        recover_after_crash()


class StoreSpawnWorker(SpawnWorker):
    """The same for the demo, whose work horses are spawned rather than forked."""

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        recover_after_crash()


def make_worker(app, worker_class=StoreWorker):
    return worker_class([get_queue(app)], connection=get_redis(app), serializer=SERIALIZER, job_class=JobsOnlyJob)
