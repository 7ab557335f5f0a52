"""The worker: runs only functions from the jobs package, with the project's serializer."""
from rq import Worker
from rq.job import Job

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


def make_worker(app, worker_class=Worker):
    return worker_class([get_queue(app)], connection=get_redis(app), serializer=SERIALIZER, job_class=JobsOnlyJob)
